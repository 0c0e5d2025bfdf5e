// Must NOT compile: tensor/ is below model/.
#include "model/config.h"

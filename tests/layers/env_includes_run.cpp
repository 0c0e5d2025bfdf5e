// Must NOT compile: env/ sits below run/ (recipes read environments, not the other way round).
#include "run/recipe.h"

// Must NOT compile: eval/ sits beside train/, not above it (docs/ARCHITECTURE.md).
#include "train/grpo.h"

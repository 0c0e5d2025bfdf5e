// Must compile (the control for the probes that must not): eval/ uses run/.
#include "eval/eval_run.h"
#include "run/recipe.h"

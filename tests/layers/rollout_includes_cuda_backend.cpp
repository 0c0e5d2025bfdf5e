// Must NOT compile: the CUDA backend is private to kernels/; rollout/ reaches it through
// kernels/ops.h, kernels/decode_state.h, kernels/sampling.h and device/.
#include "kernels/cuda/cuda_context.h"

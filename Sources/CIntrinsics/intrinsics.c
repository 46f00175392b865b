// Everything is static inline in include/intrinsics.h; SwiftPM needs one source file.
#include "intrinsics.h"

// BLAS entry points used by Engine. Debian's OpenBLAS provides cblas.h together with
// openblas_set_num_threads / openblas_get_config / openblas_get_corename.
#include <cblas.h>

// BLAS entry points used by Engine. Debian's OpenBLAS provides cblas.h together with
// openblas_set_num_threads / openblas_get_config / openblas_get_corename.
#include <cblas.h>

// LAPACK, which Debian's OpenBLAS library also exports (Fortran calling convention,
// column-major): solves A X = B for a general square A by LU with partial pivoting.
void dgesv_(const int *n, const int *nrhs, double *a, const int *lda, int *ipiv, double *b, const int *ldb,
  int *info);

// oneDNN 2.x C API (Debian's libdnnl-dev; the v2 API with *_desc_init). Debian builds it
// with the OpenMP runtime; omp_set_num_threads (from libgomp, which libdnnl links) keeps
// every oneDNN call single-threaded inside LotteryKit's own shards.
#include <oneapi/dnnl/dnnl.h>
void omp_set_num_threads(int);

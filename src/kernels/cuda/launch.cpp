// The switch of launch.cuh.
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/launch.cuh"

namespace hyrax::cuda {

bool overlapped_launches() {
  const char* v = std::getenv("HYRAX_PDL");
  return !(v && std::strcmp(v, "0") == 0);
}

}  // namespace hyrax::cuda

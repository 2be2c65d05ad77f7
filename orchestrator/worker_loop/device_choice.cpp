#include "orchestrator/worker_loop/device_choice.h"

#include <algorithm>
#include <cstdlib>

#include "worker/base/error.h"

namespace memsweep {

int local_worker_index(int my_rank, std::vector<int> node_ranks, int world_size) {
  if (world_size <= 1) return 0;
  std::sort(node_ranks.begin(), node_ranks.end());
  int index = 0;
  for (int rank : node_ranks) {
    if (rank == my_rank) return index;
    if (rank != 0) ++index;  // rank 0 schedules and writes; it holds no device
  }
  throw Error("rank " + std::to_string(my_rank) + " is not among its node's ranks");
}

std::string choose_device(const std::string& policy, int local_index, int visible_devices, const char* cuda_visible_devices,
                          int devices_per_worker) {
  if (policy == "cpu") return "cpu";
  if (policy != "auto") throw Error("device policy must be \"auto\" or \"cpu\", found \"" + policy + "\"");
  if (cuda_visible_devices) {
    const std::string visible = cuda_visible_devices;
    if (visible.empty() || visible == "-1" || visible == "NoDevFiles") return "cpu";
  }
  if (visible_devices <= 0) return "cpu";
  const int k = std::max(1, devices_per_worker);
  if (k > visible_devices)
    throw Error("devices_per_worker = " + std::to_string(k) + ", but this rank sees " + std::to_string(visible_devices) +
                " GPU(s): give each worker at least " + std::to_string(k) + " (e.g. --gpus-per-task) or lower devices_per_worker");
  return "cuda:" + std::to_string((local_index % (visible_devices / k)) * k);
}

int intra_op_threads(int usable_cores, int workers_on_node, const char* omp_num_threads) {
  if (omp_num_threads && *omp_num_threads) {
    char* end = nullptr;
    const long value = std::strtol(omp_num_threads, &end, 10);
    if (*end == '\0' && value > 0 && value < 100000) return int(value);
  }
  return std::max(1, usable_cores / std::max(1, workers_on_node));
}

int workers_on_node(const std::vector<int>& node_ranks, int world_size) {
  if (world_size <= 1) return 1;
  return int(std::count_if(node_ranks.begin(), node_ranks.end(), [](int rank) { return rank != 0; }));
}

}  // namespace memsweep

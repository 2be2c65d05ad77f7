#pragma once
// Which device a worker rank uses: a pure function, tested over a table of node layouts. libtorch-free (the
// caller passes torch::cuda::device_count(), which already honours CUDA_VISIBLE_DEVICES).
#include <string>
#include <vector>

namespace memsweep {

// The worker's position among the worker ranks of its node (rank 0 is not a worker when there are others).
// `node_ranks`: the world ranks on this node (MPI_Comm_split_type shared), any order. With world_size 1 the
// single process is worker 0.
int local_worker_index(int my_rank, std::vector<int> node_ranks, int world_size);

// "cpu" or "cuda:N": the first of the `devices_per_worker` devices the worker spans. policy "cpu" forces the CPU;
// "auto" gives worker i the group of devices k·i .. k·i+k-1, groups taken mod the whole groups visible (k = 1: device
// i % visible_devices). CUDA_VISIBLE_DEVICES (nullptr: unset) set to "" or "-1" hides every GPU. One-GPU-per-task
// layouts (each rank sees its own k devices) give every rank cuda:0. Error when fewer than k GPUs are visible.
std::string choose_device(const std::string& policy, int local_index, int visible_devices, const char* cuda_visible_devices,
                          int devices_per_worker = 1);

// libtorch intra-op threads for one worker: OMP_NUM_THREADS when set to a positive number (the user decides),
// else the cores this process may run on (its affinity mask: a SLURM allocation's) shared evenly among the
// node's workers, at least 1 — so workers x threads <= cores.
int intra_op_threads(int usable_cores, int workers_on_node, const char* omp_num_threads);

// How many of `node_ranks` are workers (rank 0 schedules when the world has more than one rank).
int workers_on_node(const std::vector<int>& node_ranks, int world_size);

}  // namespace memsweep

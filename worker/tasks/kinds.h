#pragma once
// The open functions of the task kinds, one per kind's file; listed in task.cpp's table.
#include <memory>

#include "worker/tasks/task.h"

namespace memsweep {

std::unique_ptr<Task> open_memorization_task(const DatasetSpec& spec, const TaskContext& context);

}  // namespace memsweep

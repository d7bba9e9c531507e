// minidl — checkpoints in the safetensors format (huggingface/safetensors, "Format" section):
//   8 bytes   little-endian uint64 N = length of the header
//   N bytes   JSON header: {"__metadata__": {str: str}, "<name>": {"dtype": "F32",
//             "shape": [..], "data_offsets": [begin, end]}, ...}, offsets relative to the
//             byte after the header
//   the rest  the tensors' bytes, little-endian, row-major
// So `safetensors.torch.load_file(path)` reads minidl checkpoints and vice versa.
#pragma once

#include <map>
#include <string>

#include "layers/module.hpp"

namespace minidl {

struct Checkpoint {
  NamedTensors tensors;                        ///< in file order (F32 tensors)
  std::map<std::string, std::string> metadata; ///< "__metadata__"
};

/// Writes `path` atomically: to "<path>.tmp", then renamed over `path`, so an existing file is
/// never left half-written. Throws std::runtime_error naming the file on an I/O failure.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads a safetensors file. Throws std::runtime_error naming the file and what is wrong:
/// missing or unreadable, truncated, a header that is not JSON, a dtype other than F32 (I64
/// "num_batches_tracked" entries from PyTorch are skipped), offsets outside the file.
Checkpoint load_safetensors(const std::string& path);

}  // namespace minidl

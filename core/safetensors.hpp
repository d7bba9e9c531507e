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

#include "core/tensor.hpp"

namespace minidl {

struct Checkpoint {
  NamedTensors tensors;                         ///< in file order (F32 tensors)
  std::map<std::string, std::string> metadata;  ///< "__metadata__"
};

/// Writes `path` atomically and durably (core/file_io.hpp: a fresh temporary, fsync, rename),
/// so an existing file is never left half-written. Throws std::runtime_error naming the file on
/// an I/O failure.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads a safetensors file, validating every field before use. Throws std::runtime_error
/// naming the file, the entry and what was expected: missing, unreadable, a folder or not a
/// regular file (a FIFO is refused, never waited on), empty; header length beyond the file or
/// over 64 MiB; a header that is not a JSON object or nests deeper than 16; a name given twice;
/// "__metadata__" that is not an object of strings; a tensor entry without dtype, shape (at
/// most 8 non-negative integers) or data_offsets (two non-negative integers inside the data
/// section, spanning exactly 4 * numel bytes); tensors whose byte ranges overlap (naming both)
/// or leave bytes of the data section to no tensor (the format requires the ranges to be
/// disjoint and to cover the buffer); a dtype other than F32 (I64 "num_batches_tracked"
/// entries from PyTorch are skipped). Values are not checked: NaN and infinity load as they are
/// (see train/run_dir.hpp, load_model).
Checkpoint load_safetensors(const std::string& path);

}  // namespace minidl

#include "core/safetensors.hpp"

#include "core/file_io.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace minidl {

using json = nlohmann::json;

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * sizeof(float);
    header[name] = {
        {"dtype", "F32"}, {"shape", t.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  // Invalid UTF-8 in a name or metadata value (a path, say) is replaced, never an exception.
  std::string text = header.dump(-1, ' ', false, json::error_handler_t::replace);
  while (text.size() % 8 != 0) text += ' ';  // keeps the data 8-byte aligned, as the spec allows
  std::string bytes;
  bytes.reserve(8 + text.size() + offset);
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  bytes += text;
  for (const auto& [name, t] : tensors) {
    bytes.append(reinterpret_cast<const char*>(t.data()), t.numel() * sizeof(float));
  }
  write_file_atomic(path, bytes);
}

namespace {

/// Largest header minidl reads (a resnet866 checkpoint's header is about 100 KB).
constexpr uint64_t kMaxHeaderBytes = 64ull << 20;
/// Deepest nesting of JSON arrays and objects a valid header needs is 3 ({"t": {"shape": [..]}}).
constexpr int kMaxHeaderDepth = 16;
constexpr size_t kMaxRank = 8;

/// `v` as a non-negative integer, or -1 if it is not one.
int64_t as_count(const json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return u > static_cast<uint64_t>(INT64_MAX) ? -1 : static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>() < 0 ? -1 : v.get<int64_t>();
  return -1;
}

}  // namespace

Checkpoint load_safetensors(const std::string& path) {
  const RegularFile in(path, "checkpoint");
  const uint64_t file_size = in.size();
  auto fail = [&](const std::string& what) {
    return std::runtime_error("checkpoint \"" + path +
                              "\" is not a valid safetensors file: " + what);
  };
  if (file_size < 8) {
    throw fail(file_size == 0 ? std::string("the file is empty (0 bytes)")
                              : "shorter than the 8-byte header length (" +
                                    std::to_string(file_size) + " bytes)");
  }
  unsigned char len[8];
  in.read_at(0, len, 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  if (n > file_size - 8) {
    throw fail("header length " + std::to_string(n) + " exceeds the file size " +
               std::to_string(file_size) + " (truncated, or not a safetensors file)");
  }
  if (n > kMaxHeaderBytes) {
    throw fail("header length " + std::to_string(n) + " is over minidl's limit of " +
               std::to_string(kMaxHeaderBytes) + " bytes");
  }
  std::string text(n, '\0');
  in.read_at(8, text.data(), text.size());
  if (json_nesting_depth(text) > kMaxHeaderDepth) {
    throw fail("the header nests arrays or objects more than " + std::to_string(kMaxHeaderDepth) +
               " deep");
  }
  // A JSON object keeps the last of two equal keys: the names are collected while parsing.
  std::vector<std::string> names;
  const json::parser_callback_t collect = [&names](int depth, json::parse_event_t event,
                                                   json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key) names.push_back(parsed.get<std::string>());
    return true;
  };
  json header;
  try {
    header = json::parse(text, collect);
  } catch (const json::parse_error& e) {
    throw fail("the header is not valid JSON (error at byte " + std::to_string(e.byte) + ")");
  }
  if (!header.is_object()) throw fail("the header is not a JSON object");
  std::sort(names.begin(), names.end());
  if (auto d = std::adjacent_find(names.begin(), names.end()); d != names.end())
    throw fail("the header names \"" + *d + "\" twice (names must be unique)");
  const uint64_t data_size = file_size - 8 - n;
  // The header is a JSON object, unordered: order the tensors by their data offsets.
  struct Entry {
    uint64_t begin, end;
    std::string name;
    Shape shape;
  };
  struct Range {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Entry> entries;
  std::vector<Range> ranges;  // every tensor's, the skipped ones too
  Checkpoint ck;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& e = *it;
    if (name == "__metadata__") {
      if (!e.is_object()) throw fail("\"__metadata__\" is not an object of strings");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m->is_string()) {
          throw fail("\"__metadata__\" entry \"" + m.key() + "\" is not a string (the format " +
                     "allows only strings there)");
        }
        ck.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor \"" + name + "\"";
    if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
        !e.contains("data_offsets")) {
      throw fail(where + " is not an object with dtype, shape and data_offsets");
    }
    const json& dtype = e["dtype"];
    if (!dtype.is_string()) throw fail(where + ": dtype is not a string");
    const json& offsets = e["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || as_count(offsets[0]) < 0 ||
        as_count(offsets[1]) < 0) {
      throw fail(where + ": data_offsets must be two non-negative integers [begin, end], got " +
                 offsets.dump().substr(0, 80));
    }
    const uint64_t begin = static_cast<uint64_t>(as_count(offsets[0]));
    const uint64_t end = static_cast<uint64_t>(as_count(offsets[1]));
    if (end < begin || end > data_size) {
      throw fail(where + " has data_offsets [" + std::to_string(begin) + ", " +
                 std::to_string(end) + "] outside the " + std::to_string(data_size) +
                 " data bytes (truncated?)");
    }
    ranges.push_back({begin, end, name});
    if (dtype != "F32") {
      if (name.find("num_batches_tracked") != std::string::npos) continue;  // PyTorch's I64 counter
      throw fail(where + " has dtype " + dtype.dump() + ", minidl reads F32");
    }
    const json& shape_json = e["shape"];
    if (!shape_json.is_array() || shape_json.size() > kMaxRank) {
      throw fail(where + ": shape must be an array of at most " + std::to_string(kMaxRank) +
                 " non-negative integers");
    }
    Shape shape;
    uint64_t numel = 1;
    for (const json& d : shape_json) {
      const int64_t v = as_count(d);
      if (v < 0)
        throw fail(where + ": shape " + shape_json.dump() +
                   " has an entry that is not a non-negative integer");
      shape.push_back(v);
      // Overflow-checked: numel * 4 must fit in the data section anyway.
      if (v != 0 && numel > data_size / static_cast<uint64_t>(v))
        numel = data_size + 1;
      else
        numel *= static_cast<uint64_t>(v);
    }
    if (numel > data_size / sizeof(float)) {
      throw fail(where + " of shape " + shape_str(shape) + " needs more bytes than the file's " +
                 std::to_string(data_size) + " data bytes (truncated?)");
    }
    if (end - begin != numel * sizeof(float)) {
      throw fail(where + " of shape " + shape_str(shape) + " has data_offsets [" +
                 std::to_string(begin) + ", " + std::to_string(end) + "], " +
                 std::to_string(end - begin) + " bytes for " + std::to_string(numel) +
                 " F32 values (" + std::to_string(numel * sizeof(float)) + " bytes)");
    }
    entries.push_back({begin, end, name, std::move(shape)});
  }
  // The format's layout rule: the tensors' byte ranges are disjoint and cover the data buffer.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin
           : a.end != b.end   ? a.end < b.end
                              : a.name < b.name;
  });
  auto span = [](const Range& r) {
    return "\"" + r.name + "\" [" + std::to_string(r.begin) + ", " + std::to_string(r.end) + ")";
  };
  uint64_t covered = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const Range& r = ranges[i];
    if (r.begin < covered)
      throw fail("tensors " + span(ranges[i - 1]) + " and " + span(r) + " overlap");
    if (r.begin > covered) {
      throw fail("data bytes [" + std::to_string(covered) + ", " + std::to_string(r.begin) +
                 ") belong to no tensor (before " + span(r) +
                 "); the tensors must cover the data buffer");
    }
    covered = r.end;
  }
  if (covered != data_size) {
    throw fail("data bytes [" + std::to_string(covered) + ", " + std::to_string(data_size) +
               ") belong to no tensor" +
               (ranges.empty() ? std::string() : " (after " + span(ranges.back()) + ")") +
               "; the tensors must cover the data buffer");
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.name < b.name;
  });
  for (Entry& e : entries) {
    Tensor t(e.shape);
    in.read_at(8 + n + e.begin, t.mutable_data(), static_cast<size_t>(e.end - e.begin));
    ck.tensors.emplace_back(e.name, std::move(t));
  }
  return ck;
}

}  // namespace minidl

#include "core/safetensors.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
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
    header[name] = {{"dtype", "F32"}, {"shape", t.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';  // keeps the data 8-byte aligned, as the spec allows
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write checkpoint \"" + tmp + "\"");
    uint64_t n = text.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, t] : tensors) {
      out.write(reinterpret_cast<const char*>(t.data()),
                static_cast<std::streamsize>(t.numel() * sizeof(float)));
    }
    out.flush();
    if (!out) throw std::runtime_error("write failed for checkpoint \"" + tmp + "\"");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot rename \"" + tmp + "\" to \"" + path + "\": " +
                             std::strerror(errno));
  }
}

Checkpoint load_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error("checkpoint \"" + path + "\" does not exist or cannot be read");
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  auto fail = [&](const std::string& what) {
    return std::runtime_error("checkpoint \"" + path + "\" is not a valid safetensors file: " +
                              what);
  };
  if (file_size < 8) throw fail("shorter than the 8-byte header length");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  if (n > file_size - 8) {
    throw fail("header length " + std::to_string(n) + " exceeds the file size " +
               std::to_string(file_size));
  }
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  json header;
  try {
    header = json::parse(text);
  } catch (const std::exception& e) {
    throw fail(std::string("header is not JSON (") + e.what() + ")");
  }
  const uint64_t data_size = file_size - 8 - n;
  // The header is a JSON object, unordered: order the tensors by their data offsets.
  std::vector<std::pair<uint64_t, std::string>> order;
  Checkpoint ck;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      for (auto m = it->begin(); m != it->end(); ++m)
        ck.metadata[m.key()] = m->is_string() ? m->get<std::string>() : m->dump();
      continue;
    }
    const json& e = *it;
    if (!e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets")) {
      throw fail("entry \"" + it.key() + "\" lacks dtype, shape or data_offsets");
    }
    if (e["dtype"] != "F32") {
      if (it.key().find("num_batches_tracked") != std::string::npos) continue;
      throw fail("tensor \"" + it.key() + "\" has dtype " + e["dtype"].dump() +
                 ", minidl reads F32");
    }
    order.emplace_back(e["data_offsets"][0].get<uint64_t>(), it.key());
  }
  std::sort(order.begin(), order.end());
  for (auto& [off, name] : order) {
    const json& e = header[name];
    Shape shape = e["shape"].get<Shape>();
    const uint64_t begin = e["data_offsets"][0].get<uint64_t>();
    const uint64_t end = e["data_offsets"][1].get<uint64_t>();
    const uint64_t bytes = static_cast<uint64_t>(shape_numel(shape)) * sizeof(float);
    if (end < begin || end - begin != bytes || end > data_size) {
      throw fail("tensor \"" + name + "\" of shape " + shape_str(shape) + " has data_offsets [" +
                 std::to_string(begin) + ", " + std::to_string(end) + "] but " +
                 std::to_string(data_size) + " data bytes (truncated?)");
    }
    Tensor t(shape);
    in.seekg(static_cast<std::streamoff>(8 + n + begin));
    in.read(reinterpret_cast<char*>(t.data()), static_cast<std::streamsize>(bytes));
    if (!in) throw fail("could not read tensor \"" + name + "\"");
    ck.tensors.emplace_back(name, std::move(t));
  }
  return ck;
}

}  // namespace minidl

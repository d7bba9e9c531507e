// minidl — writing files so that nothing already saved is lost.
#pragma once

#include <string>

namespace minidl {

/// Replaces `path` with `bytes` atomically and durably: writes "<path>.tmp", fsyncs it, renames
/// it over `path` and fsyncs the folder (POSIX rename(2) is atomic). A crash or kill at any
/// moment leaves either the old file or the new one, never a mix. Throws std::runtime_error
/// naming the file and the system's reason (strerror) on any failure; the old file stays.
void write_file_atomic(const std::string& path, const std::string& bytes);

/// Deepest nesting of JSON arrays and objects in `text`, counted outside strings, without
/// parsing. Readers check it before parsing an outside file, so a crafted file cannot recurse
/// deep in the parser (or in the parsed value's destructor). Never throws.
int json_nesting_depth(const std::string& text);

}  // namespace minidl

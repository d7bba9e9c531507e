// minidl — one name table per choice. A choice (a schedule kind, a train-only mode, a recipe) is
// an enum, and its names live in exactly one table: `enum_table(E{})`, declared next to the enum
// and found by argument-dependent lookup. Config files, checkpoint metadata, the CLI's parser,
// its help text and every error message read that table, so a name is spelled once.
//
//   enum class Color { kRed, kBlue };
//   const EnumTable<Color>& enum_table(Color);  // {{Color::kRed, "red", "..."}, ...}
//   name_of(Color::kBlue) == "blue";  parse_enum<Color>("red", "color") == Color::kRed
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace minidl {

/// One value of an enum: its name (what files and flags use) and a short description (help).
template <class E>
struct EnumEntry {
  E value;
  const char* name;
  const char* help;
};
template <class E>
using EnumTable = std::vector<EnumEntry<E>>;

/// The name of `value` in its table. Throws std::logic_error for a value the table lacks.
template <class E>
std::string name_of(E value) {
  for (const EnumEntry<E>& e : enum_table(E{})) {
    if (e.value == value) return e.name;
  }
  throw std::logic_error("name_of: a value missing from its enum table");
}

/// Every name of E's table, in table order.
template <class E>
std::vector<std::string> names_of() {
  std::vector<std::string> v;
  for (const EnumEntry<E>& e : enum_table(E{})) v.push_back(e.name);
  return v;
}

/// "a, b or c" (for error messages).
inline std::string choices_text(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i)
    s += (i == 0 ? "" : i + 1 == v.size() ? " or " : ", ") + v[i];
  return s;
}

/// The value named `name`. Throws std::invalid_argument "<what> must be a, b or c, got \"x\"".
template <class E>
E parse_enum(const std::string& name, const std::string& what) {
  for (const EnumEntry<E>& e : enum_table(E{})) {
    if (name == e.name) return e.value;
  }
  const std::string shown = name.size() > 40 ? name.substr(0, 40) + "..." : name;
  throw std::invalid_argument(what + " must be " + choices_text(names_of<E>()) + ", got \"" +
                              shown + "\"");
}

}  // namespace minidl

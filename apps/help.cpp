// minidl — the help layout (HelpFormatter), the list of subcommands, and the one-line messages
// for command-line errors: unknown flags with the nearest ones ("did you mean --lr?"), flags of
// another experiment, unknown subcommands.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>
#include <vector>

#include "apps/cli.hpp"

namespace minidl::app {

namespace {

constexpr size_t kHelpColumns = 100;  // the help's lines fit in this
constexpr size_t kNameColumn = 30;    // the flags' column, then their descriptions

/// `text` as a sentence: its first word capitalized when it is a plain lowercase word (not a
/// name such as model.safetensors, resnet<D> or --norm), a final period added.
std::string sentence(std::string text) {
  while (!text.empty() && text.back() == ' ') text.pop_back();
  if (text.empty()) return text;
  const std::string word = text.substr(0, text.find_first_of(" ,:;"));
  const bool plain = std::islower(static_cast<unsigned char>(word[0])) &&
                     std::all_of(word.begin(), word.end(), [](char c) {
                       return std::islower(static_cast<unsigned char>(c)) || c == '\'' || c == '-';
                     });
  if (plain) text[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(text[0])));
  if (text.back() != '.' && text.back() != '?' && text.back() != '!') text += '.';
  return text;
}

/// `text` wrapped at spaces into lines of at most `width` characters, joined by '\n'.
std::string wrap(const std::string& text, size_t width) {
  std::string out, line, word;
  auto flush_word = [&] {
    if (word.empty()) return;
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      out += line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
    word.clear();
  };
  for (char c : text) {
    if (c == ' ') {
      flush_word();
    } else if (c == '\n') {
      flush_word();
      out += line + "\n";
      line.clear();
    } else {
      word += c;
    }
  }
  flush_word();
  return out + line;
}

/// The type part of CLI11's "TYPE:validator:validator" (the validators are the ranges).
std::vector<std::string> type_parts(const CLI::Option* opt) {
  std::vector<std::string> parts;
  const std::string t = opt->get_type_name();
  size_t begin = 0;
  for (size_t at = t.find(':'); at != std::string::npos; at = t.find(':', begin)) {
    parts.push_back(t.substr(begin, at - begin));
    begin = at + 1;
  }
  parts.push_back(t.substr(begin));
  return parts;
}

/// Edit distance (Levenshtein, a swap of neighbours counted once) between a and b.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

/// The first letters of a flag's words: "learning-rate" -> "lr".
std::string initials(const std::string& name) {
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (i == 0 || name[i - 1] == '-') out += name[i];
  }
  return out;
}

/// "a", "a and b", "a, b and c".
std::string and_list(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i)
    s += (i == 0 ? "" : i + 1 == v.size() ? " and " : ", ") + v[i];
  return s;
}

/// "a", "a or b", "a, b or c".
std::string or_list(const std::vector<std::string>& v) { return choices_text(v); }

/// Whether `arg` is a flag (not a value such as "-1" or "-0.5").
bool is_flag(const std::string& arg) {
  return arg.size() > 1 && arg[0] == '-' && !std::isdigit(static_cast<unsigned char>(arg[1])) &&
         arg[1] != '.';
}

/// The flag's name without its value ("--lr=0.1" -> "--lr").
std::string flag_name(const std::string& arg) { return arg.substr(0, arg.find('=')); }

/// Whether `app` has the flag `flag` (any of its spellings).
bool has_flag(const CLI::App& app, const std::string& flag) {
  for (const CLI::Option* opt : app.get_options()) {
    if (!opt->nonpositional()) continue;
    for (const std::string& l : opt->get_lnames())
      if ("--" + l == flag) return true;
    for (const std::string& s : opt->get_snames())
      if ("-" + s == flag) return true;
  }
  return false;
}

/// The command's words as typed: "train", "experiment bn-only".
std::string command_path(const CLI::App* app) {
  std::string path;
  for (; app && app->get_parent(); app = app->get_parent())
    path = app->get_name() + (path.empty() ? "" : " " + path);
  return path;
}

/// The names of the subcommands of `app`, in their order.
std::vector<std::string> subcommand_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    names.push_back(sub->get_name());
  return names;
}

/// "subcommand" for minidl's own, else the parent's name ("experiment").
std::string subcommand_noun(const CLI::App& app) {
  return app.get_parent() ? app.get_name() : "subcommand";
}

/// The message for an unknown flag of `at`.
std::string unknown_flag_message(const CLI::App& at, const std::string& flag) {
  const std::vector<std::string> near = nearest_flags(at, flag);
  const std::string hint =
      near.empty()
          ? ""
          : " (did you mean " +
                or_list({near.begin(), near.begin() + std::min<size_t>(near.size(), 3)}) + "?)";
  // A flag of a sibling (another experiment): say whose it is.
  if (const CLI::App* parent = at.get_parent(); parent && parent->get_parent()) {
    std::vector<std::string> owners;
    for (const CLI::App* sib : parent->get_subcommands([](const CLI::App*) { return true; }))
      if (sib != &at && has_flag(*sib, flag)) owners.push_back(sib->get_name());
    if (!owners.empty())
      return flag + " is for " + and_list(owners) + ", not " + at.get_name() + hint;
  }
  const std::string where = at.get_parent() ? " for " + command_path(&at) : "";
  return "unknown flag " + flag + where + hint;
}
}  // namespace

HelpFormatter::HelpFormatter() { column_width(kNameColumn); }

std::string HelpFormatter::make_option_name(const CLI::Option* opt, bool is_positional) const {
  if (is_positional) return opt->get_name(true, false);
  std::string name;
  for (const std::string& s : opt->get_snames()) name += "-" + s + ", ";
  return name + opt->get_name();  // the first long name; the others are old spellings
}

std::string HelpFormatter::make_option_opts(const CLI::Option* opt) const {
  const bool many = opt->get_expected_max() >= CLI::detail::expected_max_vector_size;
  if (opt->get_positional()) return many ? "..." : "";
  if (opt->get_type_size() == 0) return "";  // a switch
  std::string type = type_parts(opt)[0];
  if (type == "FLOAT") type = "NUMBER";
  if (type == "UINT") type = "INT";
  if (type == "BOOLEAN") type = "true|false";
  return " " + type + (many ? " ..." : "");
}

std::string HelpFormatter::make_option_desc(const CLI::Option* opt) const {
  std::string text = sentence(opt->get_description());
  const std::vector<std::string> parts = type_parts(opt);
  for (size_t i = 1; i < parts.size(); ++i) {  // the ranges; CLI11's "{a,b}" lists are in the text
    if (!parts[i].empty() && parts[i][0] != '{' && parts[i][0] != '[')
      text += " " + sentence(parts[i]);
  }
  const std::vector<std::string>& longs = opt->get_lnames();
  if (longs.size() > 1) {
    std::vector<std::string> old;
    for (size_t i = 1; i < longs.size(); ++i) old.push_back("--" + longs[i]);
    text += " Its old name " + or_list(old) + " is still accepted, until the next release.";
  }
  std::string d = opt->get_default_str();
  if (!d.empty() && d.front() == '[' && d.back() == ']') d = d.substr(1, d.size() - 2);
  std::replace(d.begin(), d.end(), ',', ' ');
  if (type_parts(opt)[0] == "BOOLEAN") d = d == "1" ? "true" : d == "0" ? "false" : d;
  if (!d.empty()) text += " Default: " + d + ".";
  if (opt->get_required()) text += " Required.";
  return wrap(text, kHelpColumns - kNameColumn);
}

std::string HelpFormatter::make_subcommand(const CLI::App* sub) const {
  std::stringstream out;
  CLI::detail::format_help(out, sub->get_name(),
                           wrap(sentence(sub->get_description()), kHelpColumns - kNameColumn),
                           column_width_);
  return out.str();
}

std::string HelpFormatter::make_description(const CLI::App* app) const {
  const std::string text = app->get_description();
  return text.empty() ? "" : wrap(sentence(text), kHelpColumns) + "\n";
}

std::vector<Command> add_commands(CLI::App& app) {
  app.formatter(std::make_shared<HelpFormatter>());  // the subcommands inherit it
  std::vector<Command> commands = {add_train(app),      add_eval(app),     add_predict(app),
                                   add_bench(app),      add_bn_stats(app), add_recalibrate(app),
                                   add_experiment(app), add_plot(app)};
  app.footer("Each subcommand's flags: minidl SUBCOMMAND --help (docs/cli.md has them all).");
  return commands;
}

std::vector<std::string> nearest_flags(const CLI::App& app, const std::string& typed) {
  const std::string t = flag_name(typed).substr(typed.rfind("--", 0) == 0 ? 2 : 1);
  std::vector<std::pair<size_t, std::string>> ranked;  // (rank, the flag's first name)
  for (const CLI::Option* opt : app.get_options()) {
    if (!opt->nonpositional() || opt->get_lnames().empty()) continue;
    size_t best = SIZE_MAX;
    for (const std::string& l : opt->get_lnames()) {
      if (l == "help") continue;
      size_t rank = SIZE_MAX;
      if (t.size() >= 2 && l.size() >= 2 && (initials(t) == l || initials(l) == t)) {
        rank = 0;  // --learning-rate for --lr, --bs for --batch-size
      } else if (t.size() >= 3 && (l.rfind(t, 0) == 0 || t.rfind(l + "-", 0) == 0)) {
        rank = 1;  // --limit for --limit-test, --epochs-total for --epochs
      } else {
        const size_t d = edit_distance(t, l);
        if (d <= std::max<size_t>(1, std::max(t.size(), l.size()) / 4)) rank = 1 + d;
      }
      best = std::min(best, rank);
    }
    if (best != SIZE_MAX) ranked.emplace_back(best, opt->get_name());
  }
  std::stable_sort(ranked.begin(), ranked.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> out;
  for (const auto& [rank, name] : ranked) {
    if (rank > ranked.front().first + 1) break;  // the nearest ones only
    out.push_back(name);
  }
  return out;
}

namespace {
/// The chain of subcommands parsed: (minidl, train) or (minidl, experiment, bn-only).
std::vector<const CLI::App*> parsed_chain(const CLI::App& app) {
  std::vector<const CLI::App*> chain = {&app};
  while (!chain.back()->get_subcommands().empty())
    chain.push_back(chain.back()->get_subcommands().front());
  return chain;
}
}  // namespace

std::string help_hint(const CLI::App& app) {
  const std::string path = command_path(parsed_chain(app).back());
  return "Run minidl " + (path.empty() ? "" : path + " ") + "--help for " +
         (path.empty() ? "the subcommands" : "its flags and their ranges") + ".";
}

std::string parse_error_message(const CLI::App& app, const CLI::ParseError& e) {
  const std::vector<const CLI::App*> chain = parsed_chain(app);
  // The deepest command left with arguments it did not take.
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const CLI::App& at = **it;
    const std::vector<std::string> rest = at.remaining();
    if (rest.empty()) continue;
    // A word where a subcommand was due: an unknown subcommand (or experiment).
    const std::vector<std::string> subs = subcommand_names(at);
    if (!subs.empty() && at.get_subcommands().empty() && !is_flag(rest.front())) {
      const std::string noun = subcommand_noun(at);
      std::vector<std::string> near;
      for (const std::string& s : subs)
        if (edit_distance(rest.front(), s) <= std::max<size_t>(1, s.size() / 4)) near.push_back(s);
      std::string names;
      for (const std::string& s : subs) names += (names.empty() ? "" : ", ") + s;
      return "unknown " + noun + " \"" + rest.front() + "\"" +
             (near.empty() ? "" : " (did you mean " + or_list(near) + "?)") + "; the " + noun +
             "s: " + names;
    }
    std::vector<std::string> flags;
    for (const std::string& r : rest)
      if (is_flag(r) && r != "--") flags.push_back(flag_name(r));
    if (!flags.empty()) {
      std::string message;
      for (const std::string& f : flags)
        message += (message.empty() ? "" : "; ") + unknown_flag_message(at, f);
      return message;
    }
    return "unexpected argument \"" + rest.front() + "\" for " +
           (at.get_parent() ? command_path(&at) : "minidl") +
           " (each value goes after its flag: --name VALUE)";
  }
  // A flag without its value: "--lr needs a value (a number > 0 and <= 1000)".
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&e)) {
    const std::string what = e.what();
    const std::string name = what.substr(0, what.find(':'));
    const CLI::Option* opt = chain.back()->get_option_no_throw(name);
    const size_t received = what.find("received ");
    if (opt && (what.find(" missing") != std::string::npos || received != std::string::npos)) {
      const std::vector<std::string> parts = type_parts(opt);
      std::string range;
      for (size_t i = 1; i < parts.size(); ++i)
        if (!parts[i].empty() && parts[i][0] != '{')
          range += (range.empty() ? "" : "; ") + parts[i];
      const int n = opt->get_expected_min();
      return name + " needs " + (n > 1 ? std::to_string(n) + " values" : "a value") +
             (range.empty() ? "" : " (" + range + ")") +
             (received == std::string::npos ? "" : ", got " + what.substr(received + 9));
    }
  }
  // A command that needs a subcommand and got none.
  const CLI::App& last = *chain.back();
  if (dynamic_cast<const CLI::RequiredError*>(&e) && !subcommand_names(last).empty() &&
      last.get_require_subcommand_min() > 0) {
    if (!last.get_parent()) return "a subcommand is required: " + or_list(subcommand_names(last));
    return command_path(&last) + ": name one of " + or_list(subcommand_names(last));
  }
  return e.what();
}

}  // namespace minidl::app

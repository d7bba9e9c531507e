// minidl — grad mode and graph recording.
#include "core/autograd.hpp"

namespace minidl {

namespace {
// Per thread, like torch's GradMode: a data-loader thread never records.
thread_local bool g_grad_enabled = true;
}  // namespace

bool grad_enabled() { return g_grad_enabled; }
void set_grad_enabled(bool on) { g_grad_enabled = on; }

bool needs_graph(std::initializer_list<const Tensor*> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor* t : inputs) {
    if (t && t->defined() && t->requires_grad()) return true;
  }
  return false;
}

void attach_node(Tensor& out, std::vector<Tensor> inputs, std::function<void()> backward,
                 const char* name) {
  auto node = std::make_shared<Node>();
  node->inputs = std::move(inputs);
  node->backward = std::move(backward);
  node->name = name;
  out.impl()->node = std::move(node);
  out.set_requires_grad(true);
}

}  // namespace minidl

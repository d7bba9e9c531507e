// minidl — the reverse-mode autograd engine: grad mode, graph recording (attach_node) and the
// walk (run_backward) that Tensor::backward starts.
#include "core/autograd.hpp"

#include <unordered_set>
#include <utility>

#include "core/profiler.hpp"

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

void run_backward(const Tensor& root, const Tensor& grad_output) {
  // Post-order DFS with an explicit stack. `order` holds handles so that releasing a node's
  // inputs during the walk never frees a tensor still to be visited.
  std::vector<Tensor> order;
  std::unordered_set<TensorImpl*> visited;
  std::vector<std::pair<Tensor, size_t>> stack;
  stack.emplace_back(root, 0);
  visited.insert(root.impl());
  while (!stack.empty()) {
    Node* node = stack.back().first.impl()->node.get();
    size_t& next = stack.back().second;
    if (node && next < node->inputs.size()) {
      const Tensor& in = node->inputs[next++];
      if (in.defined() && in.impl()->node && !visited.count(in.impl())) {
        visited.insert(in.impl());
        stack.emplace_back(in, 0);
      }
    } else {
      order.push_back(std::move(stack.back().first));
      stack.pop_back();
    }
  }
  float* g = root.grad_data();
  const float* go = grad_output.data();
  const int64_t n = root.numel();
  for (int64_t i = 0; i < n; ++i) g[i] += go[i];
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    TensorImpl* t = it->impl();
    // A tensor with no elements has an empty gradient but its op still runs backward (a
    // synchronized BatchNorm on a process with no images must join the others' collectives).
    const bool empty_tensor = t->storage && t->storage->empty();
    if ((!t->grad.empty() || empty_tensor || t->node->runs_without_grad) && t->node->backward) {
      profiler::Scope prof(t->node->name, /*backward=*/true);
      t->node->backward();
    }
    t->node.reset();  // release the graph as we go (closures and saved tensors)
    if (t != root.impl()) Storage().swap(t->grad);  // intermediates keep no grad
  }
}

}  // namespace minidl

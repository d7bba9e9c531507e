// minidl — the reverse-mode autograd engine: grad mode, graph recording helpers, and the walk
// (run_backward, which Tensor::backward calls): one iterative reverse topological walk over
// Nodes (micrograd's engine, without recursion so deep ResNets do not overflow the stack).
#pragma once

#include <functional>
#include <vector>

#include "core/tensor.hpp"

namespace minidl {

/// Whether ops record the graph on this thread (torch.is_grad_enabled()).
bool grad_enabled();
void set_grad_enabled(bool on);

/// RAII scope with recording off (torch.no_grad()): evaluation builds no graph.
class NoGradGuard {
 public:
  NoGradGuard() : prev_(grad_enabled()) { set_grad_enabled(false); }
  ~NoGradGuard() { set_grad_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

/// True when grad mode is on and any of `inputs` requires a gradient.
bool needs_graph(std::initializer_list<const Tensor*> inputs);

/// Makes `out` require grad and attaches a Node holding `inputs` and `backward`. `name` (a
/// string literal: it is stored, not copied) names the node's row in the profiler's backward
/// pass; use the name of the op's forward profiler::Scope.
void attach_node(Tensor& out, std::vector<Tensor> inputs, std::function<void()> backward,
                 const char* name);

/// The backward pass from `root` (a recorded op's output): adds grad_output (root's shape) to
/// root's gradient, then calls each Node's backward in reverse topological order (post-order
/// DFS with an explicit stack), releasing each node and each intermediate's gradient once used.
/// Tensor::backward checks the arguments and calls this.
void run_backward(const Tensor& root, const Tensor& grad_output);

}  // namespace minidl

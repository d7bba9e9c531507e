// GroupNorm (Wu & He, "Group Normalization", ECCV 2018, eq. 1-3; torch.nn.GroupNorm): a layer
// defined outside minidl's tree, against the installed package.
// minidl itself now has GroupNorm (layers/group_norm.hpp, op ops::group_norm); this copy stays
// as the teaching example of adding a layer from outside, and is not the library's.
//
//   For each sample n and group g of C / G consecutive channels, over those channels and H, W:
//     mean = E[x],  var = E[(x - mean)^2] (biased),  x_hat = (x - mean) / sqrt(var + eps)
//   y[n, c, h, w] = weight[c] * x_hat[n, c, h, w] + bias[c]
//
// Unlike BatchNorm it keeps no running statistics and behaves the same in train and eval mode:
// each sample is normalized on its own.
// Shape: [N, C, H, W] -> [N, C, H, W]. Parameters: weight [C] (init 1), bias [C] (init 0).
// Errors: std::invalid_argument when G does not divide C, or for an input that is not
// [N, C, H, W].
#pragma once

#include "layers/module.hpp"

namespace custom {

/// The op, llm.c style: forward and backward as sibling functions, outputs first.
/// out, x_hat [N, C, HW]; inv_std [N, G]; x [N, C, HW]; weight, bias [C].
void group_norm_forward(float* out, float* x_hat, float* inv_std, const float* x,
                        const float* weight, const float* bias, int64_t N, int64_t C, int64_t HW,
                        int64_t G, float eps);
/// Accumulates (+=) into dx [N, C, HW], dweight, dbias [C] (any may be null) from dout.
void group_norm_backward(float* dx, float* dweight, float* dbias, const float* dout,
                         const float* x_hat, const float* inv_std, const float* weight, int64_t N,
                         int64_t C, int64_t HW, int64_t G);

class GroupNorm : public minidl::Module {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, float eps = 1e-5f);
  minidl::Tensor forward(const minidl::Tensor& x) override;
  std::string type_name() const override { return "GroupNorm"; }
  minidl::Tensor weight, bias;
  int64_t num_groups, num_channels;
  float eps;
};

}  // namespace custom

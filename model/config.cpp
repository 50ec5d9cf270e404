#include "model/config.h"

#include <sstream>

#include "coder/assert.h"

namespace shazip::model {

int64_t ModelConfig::param_count() const {
  const int64_t d = dim;
  const int64_t f = static_cast<int64_t>(boom_factor) * d;
  // Tied embedding/decoder (256 x d) and the decoder's bias.
  int64_t n = 256 * d + 256;
  // Per block: LayerNorm (2d), LSTM (two 4d x d matrices, two 4d biases),
  // the Boom's LayerNorms (4d) and its d -> f linear (f*d + f).
  n += layers * (2 * d + 8 * d * d + 8 * d + 4 * d + f * d + f);
  // The attention block: LayerNorms for memory and query side (4d), query
  // linear (d*d + d) and its LayerNorm (2d), gates qs, ks, vs (3d), and the
  // overparameterised value gate d -> 2d (2d*d + 2d).
  if (attn_layer >= 0) n += 4 * d + d * d + d + 2 * d + 3 * d + 2 * d * d + 2 * d;
  return n;
}

std::string ModelConfig::describe() const {
  std::ostringstream s;
  s << "d=" << dim << " L=" << layers << " attn=" << attn_layer << " M=" << mem_len
    << " T=" << seg_len << " lr=" << lr;
  return s.str();
}

std::string ModelConfig::validate() const {
  if (dim < 8 || dim > 8192 || dim % 8 != 0) return "dim must be a multiple of 8 in 8..8192";
  if (layers < 1 || layers > 64) return "layers must be in 1..64";
  if (attn_layer < -1 || attn_layer >= layers) return "attention layer out of range";
  if (boom_factor < 1 || boom_factor > 16) return "boom factor must be in 1..16";
  if (mem_len < 0 || mem_len > 65536) return "memory length must be in 0..65536";
  if (seg_len < 1 || seg_len > 4096) return "segment length must be in 1..4096";
  if (!(lr > 0 && lr < 1)) return "learning rate must be in (0, 1)";
  if (!(lr_decay >= 0 && lr_decay < 1)) return "learning-rate decay must be in [0, 1)";
  if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) return "Adam betas must be in [0, 1)";
  if (!(adam_eps > 0 && adam_eps < 1)) return "Adam epsilon must be in (0, 1)";
  if (!(clip > 0)) return "gradient clip must be positive";
  return "";
}

Preset preset(int level) {
  SHAZIP_ASSERT(level >= kMinPreset && level <= kMaxPreset);
  Preset p;
  ModelConfig& m = p.model;
  switch (level) {
    case 1: m.dim = 64;  m.layers = 1; m.attn_layer = -1; m.mem_len = 0;    p.streams = 32; break;
    case 2: m.dim = 96;  m.layers = 2; m.attn_layer = 0;  m.mem_len = 64;   p.streams = 32; break;
    case 3: m.dim = 128; m.layers = 2; m.attn_layer = 0;  m.mem_len = 128;  p.streams = 32; break;
    case 4: m.dim = 192; m.layers = 2; m.attn_layer = 0;  m.mem_len = 256;  p.streams = 32; break;
    case 5: m.dim = 256; m.layers = 3; m.attn_layer = 1;  m.mem_len = 256;  p.streams = 32; break;
    case 6: m.dim = 384; m.layers = 3; m.attn_layer = 1;  m.mem_len = 512;  p.streams = 64; break;
    case 7: m.dim = 512; m.layers = 4; m.attn_layer = 2;  m.mem_len = 1024; p.streams = 128; break;
    case 8: m.dim = 768; m.layers = 4; m.attn_layer = 2;  m.mem_len = 2048; p.streams = 256; break;
    case 9: m.dim = 1024; m.layers = 4; m.attn_layer = 2; m.mem_len = 4096; p.streams = 512; break;
  }
  // Larger models want smaller steps (lr 3e-3 diverges at d=512).
  m.lr = m.dim <= 128 ? 3e-3f : m.dim <= 256 ? 1.5e-3f : 4e-4f;
  return p;
}

}  // namespace shazip::model

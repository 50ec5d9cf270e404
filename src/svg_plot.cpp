#include "src/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace shazip {
namespace {

std::string fmt(double v, const char* f = "%.1f") {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Tick label: no trailing zeros, no "-0".
std::string tick_label(double v, double step) {
  if (std::abs(v) < step * 1e-9) v = 0;
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  std::vector<double> ticks;
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi) || target < 1) return ticks;
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  const double first = std::ceil(lo / step - 1e-9) * step;
  for (double v = first; v <= hi + step * 1e-9; v += step) ticks.push_back(v);
  return ticks;
}

std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string render_svg(const Plot& p) {
  // Data ranges.
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo;
  double y_lo = x_lo, y_hi = -x_lo;
  for (const auto& s : p.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]), y_hi = std::max(y_hi, s.y[i]);
    }
  }
  if (!(x_hi > x_lo)) x_lo = 0, x_hi = 1;
  if (p.y_max > p.y_min) {
    y_lo = p.y_min, y_hi = p.y_max;
  } else if (!(y_hi > y_lo)) {
    y_lo = 0, y_hi = 1;
  } else {
    y_lo = std::min(0.0, y_lo);
    y_hi *= 1.05;
  }
  const std::vector<double> xt = nice_ticks(x_lo, x_hi), yt = nice_ticks(y_lo, y_hi);
  if (!xt.empty()) x_hi = std::max(x_hi, xt.back());
  if (!yt.empty()) y_hi = std::max(y_hi, yt.back());

  const double left = 80, right = 30, top = 50, bottom = 70;
  const double pw = p.width - left - right, ph = p.height - top - bottom;
  auto X = [&](double v) { return left + (v - x_lo) / (x_hi - x_lo) * pw; };
  auto Y = [&](double v) { return top + ph - (v - y_lo) / (y_hi - y_lo) * ph; };

  std::string o;
  o += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(p.width) + "\" height=\"" +
       std::to_string(p.height) + "\" viewBox=\"0 0 " + std::to_string(p.width) + " " + std::to_string(p.height) +
       "\" font-family=\"sans-serif\" font-size=\"13\">\n";
  o += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o += "<text x=\"" + fmt(p.width / 2.0) + "\" y=\"28\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">" +
       xml_escape(p.title) + "</text>\n";
  // Grid and ticks.
  o += "<g stroke=\"#dddddd\" stroke-width=\"1\">\n";
  auto line = [&](double x1, double y1, double x2, double y2) {
    return "<line x1=\"" + fmt(x1) + "\" y1=\"" + fmt(y1) + "\" x2=\"" + fmt(x2) + "\" y2=\"" + fmt(y2) + "\"/>\n";
  };
  auto label = [&](double x, double y, const std::string& s) {
    return "<text x=\"" + fmt(x) + "\" y=\"" + fmt(y) + "\">" + s + "</text>\n";
  };
  for (double v : xt) o += line(X(v), top, X(v), top + ph);
  for (double v : yt) o += line(left, Y(v), left + pw, Y(v));
  o += "</g>\n<g text-anchor=\"middle\">\n";
  const double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1, ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  for (double v : xt) o += label(X(v), top + ph + 20, tick_label(v, xstep));
  o += "</g>\n<g text-anchor=\"end\">\n";
  for (double v : yt) o += label(left - 8, Y(v) + 4, tick_label(v, ystep));
  o += "</g>\n";
  // Axes and their labels.
  o += "<path d=\"M" + fmt(left) + " " + fmt(top) + " V" + fmt(top + ph) + " H" + fmt(left + pw) +
       "\" fill=\"none\" stroke=\"black\" stroke-width=\"1.5\"/>\n";
  o += "<text x=\"" + fmt(left + pw / 2) + "\" y=\"" + fmt(p.height - 22.0) + "\" text-anchor=\"middle\">" +
       xml_escape(p.x_label) + "</text>\n";
  o += "<text transform=\"translate(22," + fmt(top + ph / 2) + ") rotate(-90)\" text-anchor=\"middle\">" +
       xml_escape(p.y_label) + "</text>\n";
  // Series, clipped to the plot area.
  o += "<clipPath id=\"area\"><rect x=\"" + fmt(left) + "\" y=\"" + fmt(top) + "\" width=\"" + fmt(pw) +
       "\" height=\"" + fmt(ph) + "\"/></clipPath>\n<g clip-path=\"url(#area)\">\n";
  for (const auto& s : p.series) {
    std::string pts;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      pts += fmt(X(s.x[i])) + "," + fmt(Y(s.y[i])) + " ";
    }
    o += "<polyline fill=\"none\" stroke=\"" + xml_escape(s.color) + "\" stroke-width=\"" + fmt(s.width) + "\"" +
         (s.dashed ? " stroke-dasharray=\"8,5\"" : "") + " points=\"" + pts + "\"/>\n";
  }
  o += "</g>\n";
  // Legend, top right.
  const double lw = 380, lh = 22.0 * p.series.size() + 12;
  const double lx = left + pw - lw - 10, ly = top + 10;
  o += "<g class=\"legend\">\n<rect x=\"" + fmt(lx) + "\" y=\"" + fmt(ly) + "\" width=\"" + fmt(lw) + "\" height=\"" +
       fmt(lh) + "\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#999999\"/>\n";
  for (size_t i = 0; i < p.series.size(); ++i) {
    const auto& s = p.series[i];
    const double y = ly + 18 + 22.0 * i;
    o += "<line x1=\"" + fmt(lx + 10) + "\" y1=\"" + fmt(y - 4) + "\" x2=\"" + fmt(lx + 45) + "\" y2=\"" + fmt(y - 4) +
         "\" stroke=\"" + xml_escape(s.color) + "\" stroke-width=\"" + fmt(s.width) + "\"" +
         (s.dashed ? " stroke-dasharray=\"8,5\"" : "") + "/>\n";
    o += "<text x=\"" + fmt(lx + 55) + "\" y=\"" + fmt(y) + "\">" + xml_escape(s.label) + "</text>\n";
  }
  o += "</g>\n</svg>\n";
  return o;
}

}  // namespace shazip

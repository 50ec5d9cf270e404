// A small SVG line-plot writer for the benchmark's learning curves: axes with
// "nice" ticks, axis labels with units, a title, a legend, solid and dashed
// series. No dependencies; the output is a complete standalone SVG document.
#pragma once

#include <string>
#include <vector>

namespace shazip {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;  // same length; points outside the axes are clipped
  std::string color = "#1f77b4";
  double width = 2.0;
  bool dashed = false;
};

struct Plot {
  std::string title;
  std::string x_label;  // with the unit, e.g. "bytes coded (KB)"
  std::string y_label;
  double y_min = 0, y_max = 0;  // y_max <= y_min: fit to the data
  int width = 900, height = 540;
  std::vector<PlotSeries> series;
};

// Tick positions for [lo, hi]: multiples of 1, 2 or 5 x 10^k, about `target`
// of them, covering the range.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

// Escapes &, <, >, " for SVG/XML text.
std::string xml_escape(const std::string& s);

std::string render_svg(const Plot& plot);

}  // namespace shazip

// SVG plot writer tests: ticks, escaping, and a document with every element a
// reader needs (title, axes with labels and ticks, one line per series, legend).
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "src/svg_plot.h"

using namespace shazip;

namespace {

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("nice ticks are 1, 2 or 5 times a power of ten and cover the range", "[plot]") {
  CHECK(nice_ticks(0, 8) == std::vector<double>{0, 2, 4, 6, 8});
  CHECK(nice_ticks(0, 1000, 5) == std::vector<double>{0, 200, 400, 600, 800, 1000});
  const auto t = nice_ticks(0.13, 0.91, 4);
  REQUIRE(t.size() >= 3);
  const double step = t[1] - t[0];
  CHECK(std::abs(step - 0.2) < 1e-12);
  CHECK(t.front() >= 0.13 - 1e-12);
  CHECK(t.back() <= 0.91 + 1e-12);
  CHECK(nice_ticks(5, 5).empty());
  CHECK(nice_ticks(1, NAN).empty());
}

TEST_CASE("labels are escaped", "[plot]") {
  CHECK(xml_escape("a<b & \"c\">") == "a&lt;b &amp; &quot;c&quot;&gt;");
}

TEST_CASE("a plot document has title, axes, ticks, series and legend", "[plot]") {
  Plot p;
  p.title = "learning <curve>";
  p.x_label = "bytes coded (KB)";
  p.y_label = "bits per character";
  PlotSeries a;
  a.label = "shazip -3";
  a.x = {0, 100, 200, 300};
  a.y = {8, 3, 2.5, 2.2};
  PlotSeries z;
  z.label = "zstd -19";
  z.dashed = true;
  z.x = {0, 300};
  z.y = {2.4, 2.4};
  p.series = {a, z};
  p.y_min = 0;
  p.y_max = 8;
  const std::string svg = render_svg(p);
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(count(svg, "<svg") == 1);
  CHECK(svg.find("</svg>") == svg.size() - 7);
  CHECK(svg.find("learning &lt;curve&gt;") != std::string::npos);
  CHECK(svg.find(">bytes coded (KB)<") != std::string::npos);
  CHECK(svg.find(">bits per character<") != std::string::npos);
  CHECK(count(svg, "<polyline") == 2);
  CHECK(count(svg, "stroke-dasharray") == 2);  // the dashed series and its legend entry
  CHECK(svg.find(">shazip -3<") != std::string::npos);
  CHECK(svg.find(">zstd -19<") != std::string::npos);
  // y ticks 0, 2, 4, 6, 8 and x ticks up to 300.
  for (const char* tick : {">0<", ">2<", ">4<", ">6<", ">8<", ">300<"}) CHECK(svg.find(tick) != std::string::npos);
  // The first point of series a (x=0, y=8) is at the plot's top-left corner.
  CHECK(svg.find("points=\"80.0,50.0 ") != std::string::npos);
  // Every opened element is closed: <g> pairs.
  CHECK(count(svg, "<g") == count(svg, "</g>"));
}

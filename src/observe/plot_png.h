// A small built-in line plotter for `tinyllama report` on machines without gnuplot: an RGB
// canvas with an axis box, grid, 1-2-5 tick labels, a title, a legend and one or more
// series (y on the left axis, or on a second axis on the right), written as PNG through zlib.
// Text uses our own 5x7 bitmap font, drawn at twice its size.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tl {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

class Canvas {
 public:
  Canvas(int width, int height, Rgb background);
  int width() const { return w_; }
  int height() const { return h_; }
  Rgb at(int x, int y) const;
  void set(int x, int y, Rgb c);  // outside the canvas or the clip box: ignored
  void clip(int x0, int y0, int x1, int y1) { cx0_ = x0, cy0_ = y0, cx1_ = x1, cy1_ = y1; }
  void unclip() { clip(0, 0, w_ - 1, h_ - 1); }
  void fill(int x0, int y0, int x1, int y1, Rgb c);  // inclusive corners
  void line(int x0, int y0, int x1, int y1, Rgb c, int thickness = 1);
  void dot(int x, int y, int radius, Rgb c);
  // Text with its top-left corner at (x, y); vertical: turned 90 degrees counterclockwise,
  // reading upwards from (x, y) as its bottom-left corner. Returns its length in pixels.
  int text(int x, int y, const std::string& s, Rgb c, bool vertical = false);
  static int text_width(const std::string& s);
  static constexpr int kTextHeight = 14;

 private:
  int w_, h_, cx0_, cy0_, cx1_, cy1_;
  std::vector<uint8_t> px_;  // rows of r, g, b
};

// PNG bytes of the canvas: 8-bit RGB, filter 0 on every row, one zlib-compressed IDAT.
std::string encode_png(const Canvas& c);

struct PlotSeries {
  std::string title;
  std::vector<double> x, y;  // NaN or infinity (and <= 0 on a log axis) breaks the line
  Rgb color;
  int thickness = 1;
  bool points = false;      // a dot on every value too (gnuplot's linespoints)
  bool right_axis = false;  // against the second y axis on the right
};

struct PlotSpec {
  std::string title{}, xlabel = "step", ylabel{}, y2label{};  // {}: designated inits may omit
  bool log_y = false;                                         // the left axis
  std::vector<PlotSeries> series{};
  int width = 960, height = 540;
  bool legend_below = false;  // the legend in the bottom right corner, not the top right
};

// One axis: its range after rounding out to ticks, and the pixels the range spans.
struct PlotAxis {
  double lo = 0, hi = 1;
  int p0 = 0, p1 = 1;  // pixel of lo, pixel of hi
  bool log = false;
  std::vector<double> ticks;
  int pixel(double v) const;
};

struct Plot {
  Canvas canvas;
  PlotAxis x, y, y2;  // y2 is used only when a series is on the right axis
};

Plot draw_plot(const PlotSpec& spec);

// Tick values between lo and hi, 1-2-5 steps on a linear axis; decades (with 2 and 5 within
// them when the range is short) on a log axis. Widens [lo, hi] out to the outer ticks.
std::vector<double> nice_ticks(double& lo, double& hi, bool log);
std::string tick_label(double v, double step);

}  // namespace tl

// Shared pieces of the `clip` subcommands: model options, input lists, .npy files,
// progress display, JSON output.
#pragma once
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "clip/clip.h"
#include "tools/command.h"

namespace clip::tool {

// --model, --vocab, --device, --dtype, --batch-size, --activation
struct ModelArgs {
  std::string model, vocab, device = "auto", dtype = "auto", activation;
  int batch_size = 0;  // 0: default_batch_size(device)
  void add(CLI::App* app, bool model_required = true);
  ModelOptions options() const;  // the device and dtype resolved; max_batch from batch_size
  std::unique_ptr<Model> load() const;  // prints the model's notes (print_notes)
};
// The model's loading assumptions (Model::notes), one "note: ..." line each on stderr.
void print_notes(const Model& m);

// Image inputs in the order given: files as they are, directories walked recursively in
// sorted order (image files only), list files read line by line.
std::vector<std::string> collect_images(const std::vector<std::string>& paths,
                                        const std::string& list_file);
// Text inputs: --text values, then the lines of --text-file (empty lines skipped).
std::vector<std::string> collect_texts(const std::vector<std::string>& texts,
                                       const std::string& text_file);

// A float32 [rows, cols] .npy (the header: core/base.h's npy_header).
struct NpyArray {
  int64_t rows = 0, cols = 0;
  std::vector<float> data;
};
NpyArray read_npy(const std::string& path);  // float32 2-D C-order only; throws otherwise

// Count, rate and ETA on stderr when it is a terminal; silent otherwise.
class Progress {
 public:
  Progress(const std::string& what, int64_t total);
  void add(int64_t n);
  void finish();

 private:
  std::string what_;
  int64_t total_, done_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_;
};

// Signals: start_signal_thread() runs first in main. SIGINT/SIGTERM then end the process
// (exit status 128 + signal), unless the command called install_interrupt_handler(): then the
// first one sets a flag that long runs check between batches, and a second one ends it.
void start_signal_thread();
void install_interrupt_handler();
bool interrupted();

// Softmax of a row (for probabilities over texts or labels).
std::vector<float> softmax(const float* x, int64_t n);
// 1 / (1 + e^-x) of each (SigLIP's pair probabilities).
std::vector<float> sigmoid(const float* x, int64_t n);

}  // namespace clip::tool

// A fixed set of threads running jobs in the order they were queued. A job is fn(i) for i in
// [0, n), its indices shared out among the threads; the caller waits on the job, or cancels
// the indices not yet started. Image decoding runs on one (Model::preprocess_files,
// clip/pipeline.h).
#pragma once
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace clip {

class ThreadPool {
 public:
  class Job {
   public:
    // Until every index has run (or was skipped after cancel); rethrows the first exception
    // an index threw.
    void wait();
    // Indices not yet started are skipped; those running finish.
    void cancel();

   private:
    friend class ThreadPool;
    std::function<void(size_t)> fn_;
    size_t n_ = 0, next_ = 0;  // next_: guarded by the pool's mutex
    size_t done_ = 0;          // guarded by m_
    bool cancelled_ = false;   // guarded by m_
    std::exception_ptr error_;
    std::mutex m_;
    std::condition_variable cv_;
  };

  explicit ThreadPool(size_t threads = 0);  // 0: one per hardware thread
  ~ThreadPool();                            // runs what is queued, then joins
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  size_t size() const { return threads_.size(); }

  // Queues fn(i) for i in [0, n), after the jobs already queued.
  std::shared_ptr<Job> submit(size_t n, std::function<void(size_t)> fn);

 private:
  void work();
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;  // jobs with indices not yet claimed
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace clip

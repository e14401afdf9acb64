#include "clip/thread_pool.h"

#include <algorithm>

namespace clip {

ThreadPool::ThreadPool(size_t threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (size_t t = 0; t < threads; t++) threads_.emplace_back([this] { work(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

std::shared_ptr<ThreadPool::Job> ThreadPool::submit(size_t n, std::function<void(size_t)> fn) {
  auto job = std::make_shared<Job>();
  job->fn_ = std::move(fn);
  job->n_ = n;
  if (n == 0) return job;
  {
    std::lock_guard<std::mutex> lock(m_);
    queue_.push_back(job);
  }
  cv_.notify_all();
  return job;
}

void ThreadPool::work() {
  for (;;) {
    std::shared_ptr<Job> job;
    size_t i = 0;
    {
      std::unique_lock<std::mutex> lock(m_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopped and nothing left
      job = queue_.front();
      i = job->next_++;
      if (job->next_ == job->n_) queue_.pop_front();
    }
    bool run;
    {
      std::lock_guard<std::mutex> lock(job->m_);
      run = !job->cancelled_ && !job->error_;
    }
    std::exception_ptr error;
    if (run) {
      try {
        job->fn_(i);
      } catch (...) {
        error = std::current_exception();
      }
    }
    std::lock_guard<std::mutex> lock(job->m_);
    if (error && !job->error_) job->error_ = error;
    if (++job->done_ == job->n_) job->cv_.notify_all();
  }
}

void ThreadPool::Job::wait() {
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [&] { return done_ == n_; });
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::Job::cancel() {
  std::lock_guard<std::mutex> lock(m_);
  cancelled_ = true;
}

}  // namespace clip

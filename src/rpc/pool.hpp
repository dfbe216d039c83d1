// The handler threads of an RPC server: a queue of jobs and threads that take them, started
// when a job arrives and every thread is busy, up to a maximum. stop() drops the jobs not
// started and joins the threads (after their current job).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ipcx::rpc {

class Pool {
 public:
  explicit Pool(std::size_t max_threads) : max_(max_threads == 0 ? 1 : max_threads) {}
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;
  ~Pool() { stop(); }

  void submit(std::function<void()> job) {
    std::lock_guard lk(m_);
    if (stopping_) return;
    jobs_.push_back(std::move(job));
    // More jobs waiting than idle threads to take them (a woken thread counts as idle until it
    // runs): one more thread, up to the maximum.
    if (jobs_.size() > idle_ && threads_.size() < max_) threads_.emplace_back([this] { work(); });
    else cv_.notify_one();
  }

  void stop() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lk(m_);
      stopping_ = true;
      jobs_.clear();
      threads.swap(threads_);
    }
    cv_.notify_all();
    for (auto& t : threads) t.join();
  }

  std::size_t threads() const {
    std::lock_guard lk(m_);
    return threads_.size();
  }
  std::size_t busy() const {
    std::lock_guard lk(m_);
    return threads_.size() - idle_;
  }

 private:
  void work() {
    std::unique_lock lk(m_);
    for (;;) {
      ++idle_;
      cv_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
      --idle_;
      if (stopping_) return;
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lk.unlock();
      job();
      job = nullptr;  // (what it holds goes before the next wait)
      lk.lock();
    }
  }

  const std::size_t max_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
  bool stopping_ = false;
};

}  // namespace ipcx::rpc

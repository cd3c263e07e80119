// ScopeGuard: runs an undo action when it leaves scope unless dismiss() was called.
// Used for "undo unless committed" inside one step (remove a half-written file, ...).
#pragma once

#include <utility>

namespace vandra {

template <class F>
class [[nodiscard]] ScopeGuard {
 public:
  explicit ScopeGuard(F f) : f_(std::move(f)) {}
  ScopeGuard(const ScopeGuard&) = delete;
  ScopeGuard& operator=(const ScopeGuard&) = delete;
  ScopeGuard(ScopeGuard&& o) noexcept
      : f_(std::move(o.f_)), active_(std::exchange(o.active_, false)) {}
  ScopeGuard& operator=(ScopeGuard&&) = delete;
  ~ScopeGuard() {
    if (active_) {
      f_();
    }
  }
  void dismiss() { active_ = false; }

 private:
  F f_;
  bool active_ = true;
};

template <class F>
[[nodiscard]] ScopeGuard<F> defer(F f) {
  return ScopeGuard<F>(std::move(f));
}

}  // namespace vandra

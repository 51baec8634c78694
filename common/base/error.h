// Typed errors. Library code throws these with enough context to act on (file:line, config
// key, rank); `main` catches them, prints one line and decides the exit status.
#pragma once

#include <stdexcept>
#include <string>

namespace fmps {

// Base of all fmps errors. what() is a complete one-line message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Invalid configuration or command line; the message names the key (and line:column).
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Malformed input data; the message names file:line and the reason.
class DataError : public Error {
 public:
  using Error::Error;
};

// File system failure (open, read, write, rename); the message names the path.
class IoError : public Error {
 public:
  using Error::Error;
};

// Malformed model file or incompatible model.
class ModelError : public Error {
 public:
  using Error::Error;
};

// Communication failure: timeout, malformed message, peer gone.
class TransportError : public Error {
 public:
  using Error::Error;
};

// Training went wrong numerically (non-finite loss, divergence).
class NumericError : public Error {
 public:
  using Error::Error;
};

}  // namespace fmps

# Every dependency is a Debian 12 package; docs/adr/ records why each was chosen.
find_package(PkgConfig REQUIRED)
find_package(OpenSSL 3 REQUIRED)           # libssl-dev: digests, X.509, CMS-free RSA/ECDSA verify
find_package(LibXml2 REQUIRED)             # libxml2-dev: namespace-aware XML with line numbers
find_package(LibArchive REQUIRED)          # libarchive-dev: streaming ustar/pax/GNU tar
find_package(ZLIB REQUIRED)                # zlib1g-dev: ovf:compression="gzip"
find_package(nlohmann_json 3.11 REQUIRED)  # nlohmann-json3-dev
find_package(CLI11 REQUIRED)               # libcli11-dev
find_package(tl-expected REQUIRED)         # libexpected-dev: Result<T>
find_package(GTest REQUIRED)               # libgtest-dev, libgmock-dev
if(VANDRA_BENCH)
  find_package(benchmark REQUIRED)         # libbenchmark-dev
endif()
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)  # libcpp-httplib-dev: HTTP/TLS API
find_package(SQLite3 REQUIRED)             # libsqlite3-dev: agent VM registry
find_package(prometheus-cpp CONFIG REQUIRED)  # prometheus-cpp-dev: the controller's /metrics (ADR 0021)
pkg_check_modules(ZSTD REQUIRED IMPORTED_TARGET libzstd)  # libzstd-dev: tunnel compression (ADR 0026)
pkg_check_modules(XXHASH REQUIRED IMPORTED_TARGET libxxhash)  # libxxhash-dev: the content index's block hash (ADR 0030)
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)  # libpq-dev: the controller's PostgreSQL (ADR 0020)

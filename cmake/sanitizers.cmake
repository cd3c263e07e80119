# ASan+UBSan build used by the test command (README). Applied to every target so that
# libraries and tests agree on the instrumented runtime.
if(VANDRA_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

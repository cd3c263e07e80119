// Unit tests of readDescriptor / readSla / rewriteSla behaviours (filled in below).
#include <gtest/gtest.h>

#include "vandra/ovf/descriptor_reader.h"

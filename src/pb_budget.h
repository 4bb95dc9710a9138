// SPDX-License-Identifier: MIT
/* A protobuf-c allocator with a byte budget, so that a hostile dictionary
 * (a few bytes per empty message, each unpacked into a struct) cannot make
 * the decoder allocate without bound. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

struct pb_budget {
        ProtobufCAllocator allocator;
        size_t left;
};

void pb_budget_init(struct pb_budget *b, size_t budget);

// SPDX-License-Identifier: MIT
#include "pb_budget.h"

#include <stdlib.h>

/* Each block carries its size so that freeing returns it to the budget. */
struct block {
        size_t size;
        max_align_t data[];
};

static void *budget_alloc(void *data, size_t size)
{
        struct pb_budget *b = data;
        struct block *blk;

        if (size > b->left)
                return NULL;
        blk = malloc(sizeof(*blk) + size);
        if (!blk)
                return NULL;
        blk->size = size;
        b->left -= size;
        return blk->data;
}

static void budget_free(void *data, void *ptr)
{
        struct pb_budget *b = data;
        struct block *blk;

        if (!ptr)
                return;
        blk = (struct block *)((char *)ptr - offsetof(struct block, data));
        b->left += blk->size;
        free(blk);
}

void pb_budget_init(struct pb_budget *b, size_t budget)
{
        b->allocator.alloc = budget_alloc;
        b->allocator.free = budget_free;
        b->allocator.allocator_data = b;
        b->left = budget;
}

// SPDX-License-Identifier: MIT
#include "rolling_hash.h"

#include <errno.h>
#include <stdlib.h>

int rollsum_init(struct rollsum *r, uint32_t window)
{
        if (window == 0)
                return -EINVAL;
        r->ring = calloc(window, 1);
        if (!r->ring)
                return -ENOMEM;
        r->window = window;
        r->next = 0;
        /* bita's starting sums, wrapping in 32 bits for large windows as bita's do. */
        r->s1 = window * ROLLSUM_CHAR_OFFSET;
        r->s2 = window * (window - 1) * ROLLSUM_CHAR_OFFSET;
        return 0;
}

void rollsum_free(struct rollsum *r)
{
        free(r->ring);
        r->ring = NULL;
}

/* bita's BuzHash table, each word XORed with its seed 0x10324195 (so the
 * hashes, and the chunk boundaries, are bita's). */
#define BUZHASH_SEED 0x10324195u
#define S(v) ((v) ^ BUZHASH_SEED)
const uint32_t buzhash_table[256] = {
        S(0xa40cc360), S(0xbb785af8), S(0x32c790bc), S(0x6c64cd34), S(0x83b4aa73), S(0x36b691a5),
        S(0x4631ad79), S(0x5e49d231), S(0xcab22600), S(0x6d45bfdf), S(0xcd26dfc8), S(0xf2e63bec),
        S(0x18cb0c69), S(0x817876fd), S(0xb8c88ca8), S(0xfabcc7d3), S(0x21211be3), S(0x7bbd8a4b),
        S(0xa7bc508f), S(0x0cf35be6), S(0x5bb76463), S(0x900cc253), S(0xa1bf6569), S(0xb5fc01ff),
        S(0xd9d8d709), S(0xf2fdd75b), S(0x8cf7fdcc), S(0x7a24b10f), S(0xc2dfa4ea), S(0xaec2a258),
        S(0xb8e51edf), S(0x81944196), S(0x1040fd08), S(0x728857d5), S(0xd4ec5341), S(0x2e547382),
        S(0x337cab71), S(0x792f8dac), S(0x6932136a), S(0x0211f28b), S(0xeba45b99), S(0x47a35907),
        S(0x77271fb4), S(0xbc09c6fb), S(0x2d4eaf65), S(0xfd7b53c0), S(0xed4c2634), S(0x54c8155d),
        S(0x8078f561), S(0x0d87a7a9), S(0x4e75f462), S(0x251c62a7), S(0xb038d1a8), S(0x57d57b20),
        S(0x500b6495), S(0xee5fbf54), S(0x97bb0e7c), S(0xfe5ca9ad), S(0xa91746dd), S(0x160b7122),
        S(0xafc5ceee), S(0x7d850b16), S(0x15c28cc5), S(0x655bc438), S(0x6ed4a616), S(0x01a0e18f),
        S(0xaae23461), S(0xe387536b), S(0x8b2470b1), S(0x92be2ce1), S(0xb18b3370), S(0x803d5e25),
        S(0x8a94f196), S(0xcd225534), S(0xee4f24dc), S(0x51749bfb), S(0xcf068d2e), S(0xc859a603),
        S(0xfc12373b), S(0x8e422af2), S(0xf28be938), S(0x7619c3f8), S(0xea77dc6b), S(0x5006f1e4),
        S(0x297c8237), S(0x445bd977), S(0x67cad7ed), S(0xefde9644), S(0x626bed36), S(0x0276970b),
        S(0x1e699630), S(0x373ee5db), S(0xe83a37b3), S(0x2b3938bc), S(0xb2132f15), S(0x66e60490),
        S(0x72e4e7ef), S(0x8c4c2912), S(0x6f7aab32), S(0xc8f2eb65), S(0x9b1c772b), S(0xf48fb997),
        S(0xd7b70417), S(0x5a1476bd), S(0xfe547592), S(0x82c7e59c), S(0xede3935b), S(0x08954101),
        S(0x79f75116), S(0x18a6b281), S(0x90d2f6e6), S(0x9c0139d9), S(0xba4a4d22), S(0xfa3ab4db),
        S(0xfc18be27), S(0x047f414d), S(0xba7ff7b4), S(0xcc2b1b72), S(0x756145da), S(0xf12ff6c0),
        S(0xae78b289), S(0x55935d1d), S(0xfd849c3e), S(0xae586a4f), S(0x8948b6f5), S(0xa079d886),
        S(0xd7f5a118), S(0x9ca03cf1), S(0xc500e85d), S(0x8ce73a6c), S(0x6725bb68), S(0xfdb46ea2),
        S(0x2ec367c4), S(0x8fcdee2f), S(0x21b13487), S(0x67b41d6b), S(0xe662a354), S(0x9cad336e),
        S(0x8b284ff5), S(0x1cf3c8b3), S(0x6de04fd1), S(0xf8ed762d), S(0xc30471d4), S(0x2c4ecebc),
        S(0x7211a0b8), S(0xa34ee19c), S(0x47b4bb79), S(0x090777b6), S(0x77f02513), S(0x7cba4a74),
        S(0xd87c18d3), S(0xad8b9c5e), S(0x430c3f91), S(0x072122ed), S(0xc489ce87), S(0x05798ec5),
        S(0xc21e987b), S(0x4eb62176), S(0x8dfafefe), S(0xfaeebadc), S(0x6fdc0b01), S(0x60ebe6ee),
        S(0x4244a970), S(0x22d97939), S(0x7ae88397), S(0x76434679), S(0xf8a624b6), S(0x45ebdb60),
        S(0x68808c40), S(0x628db2cb), S(0x0b6e16fe), S(0x8fbd2c92), S(0xf5737f03), S(0x562d3fc5),
        S(0xd3306769), S(0x97bd2f93), S(0x7a5312e6), S(0x02065be8), S(0x0b0c0a57), S(0x80ad5f0e),
        S(0x30e049bd), S(0x5cd85bbc), S(0xf981af4b), S(0xbc18728f), S(0x85ce9d03), S(0xc2c97922),
        S(0xbedb47dd), S(0x420f23c2), S(0x40b504d3), S(0x9d28e6fe), S(0x7549831f), S(0xa9668219),
        S(0xd24b01ae), S(0x8e1c6dd7), S(0xe5c94cf8), S(0x34a91576), S(0x48a005e5), S(0x5c671015),
        S(0xef4797c5), S(0xd7476c01), S(0x37c339e7), S(0xae017bab), S(0xb5d8e74f), S(0x50c5fc5b),
        S(0x3b14aa64), S(0xfc693cb1), S(0x9cc65b82), S(0x407c538f), S(0x71b2a28a), S(0x297e5b01),
        S(0xa3f7007e), S(0x0742f937), S(0xe05c4998), S(0x6fd8e28f), S(0x65036a03), S(0xdc7f1a37),
        S(0x4b73b787), S(0xf4fa5820), S(0x85097266), S(0x567d4e36), S(0xdcc0aa2f), S(0x5ff8969b),
        S(0x464620a0), S(0x8c694162), S(0x868a341a), S(0x7bd4619e), S(0x2c90aa84), S(0x025668b2),
        S(0xca4d0465), S(0xcb579718), S(0xdc7aa0eb), S(0xa3605310), S(0x7a7910c6), S(0x6a8ecffc),
        S(0x6598058a), S(0xfc5fb823), S(0xbc3ef53a), S(0xf0d09546), S(0xeb210009), S(0xf58cb960),
        S(0xbecbb337), S(0xb84b6459), S(0x4ebf437d), S(0x85610fd2), S(0x16e79f2f), S(0x0849cce5),
        S(0x77c3bd48), S(0x955719e2), S(0x87abd4a7), S(0x2799ae4f), S(0x03b80cac), S(0xd56e7604),
        S(0x8b07ed07), S(0x944552c5), S(0x5b93e058), S(0x8fbd2c92),
};
#undef S

int buzhash_init(struct buzhash *b, uint32_t window)
{
        if (window == 0)
                return -EINVAL;
        *b = (struct buzhash){ .window = window };
        b->ring = calloc(window, sizeof(*b->ring));
        return b->ring ? 0 : -ENOMEM;
}

void buzhash_free(struct buzhash *b)
{
        free(b->ring);
        b->ring = NULL;
}

/*
 * Fuzz driver for federation cursors (a client sends them back): decoding arbitrary text must
 * never crash, and whatever decodes must encode back to a cursor that decodes the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "routes/federation/federation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t idx;
    char *inner = NULL;
    if (fed_cursor_decode(text, 8, &idx, &inner) == 0) {
        if (idx >= 8)
            __builtin_trap();
        char *again = fed_cursor_encode(idx, inner);
        size_t idx2;
        char *inner2 = NULL;
        if (!again || fed_cursor_decode(again, 8, &idx2, &inner2) != 0 || idx2 != idx ||
            (inner == NULL) != (inner2 == NULL) || (inner && strcmp(inner, inner2) != 0))
            __builtin_trap();
        free(inner2);
        free(again);
    }
    free(inner);
    free(text);
    return 0;
}

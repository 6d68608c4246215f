/*
 * Fuzz driver for the sealed requestState parser (policy_seal.c): any bytes a client sends as
 * requestState are refused with a reason or opened into a well-formed state, never a crash;
 * and whatever the bytes, a state sealed from them opens to the same content.
 */
#include <stdint.h>
#include <string.h>

#include "layers/policy/policy_seal.h"

static const uint8_t key[POLICY_SEAL_KEY_LEN] = {7, 7, 7, 7};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy_sealed st, back;
    const char *why = NULL;
    if (policy_unseal(key, (const char *)data, size, &st, &why) == 0) {
        if (strlen(st.rule) > 64)
            __builtin_trap();
    } else if (!why) {
        __builtin_trap();
    }
    /* Round trip of a state made from the input. */
    memset(&st, 0, sizeof st);
    size_t n = size < sizeof st.user ? size : sizeof st.user;
    memcpy(st.user, data, n);
    memcpy(st.call, data + (size - n), n);
    for (size_t i = 0; i < size && i < 64; i++)
        st.rule[i] = data[i] ? (char)data[i] : 'x';
    st.expires_ms = size * 1000003ull;
    char text[POLICY_SEAL_MAX + 1];
    if (policy_seal(key, &st, text) != 0)
        __builtin_trap();
    if (policy_unseal(key, text, strlen(text), &back, &why) != 0 ||
        memcmp(back.user, st.user, 32) != 0 || memcmp(back.call, st.call, 32) != 0 ||
        back.expires_ms != st.expires_ms || strcmp(back.rule, st.rule) != 0)
        __builtin_trap();
    return 0;
}

/*
 * Test helper (unit test and fuzz driver of mcp_json_write): the reference text of a tree,
 * jansson's json_dumps with the same flags, and what counts as jansson refusing.
 */
#ifndef TOOLGATE_TESTS_JSON_WRITE_REF_H
#define TOOLGATE_TESTS_JSON_WRITE_REF_H

#include <jansson.h>
#include <stdlib.h>

/* 1 when some object key in v is not well-formed UTF-8, by jansson's own check. */
static inline int json_has_bad_key(const json_t *v, int depth)
{
    if (depth > 5000)
        return 0; /* a tree that holds itself: the writer refuses it by its depth bound */
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (json_has_bad_key(json_array_get(v, i), depth + 1))
                return 1;
    } else if (json_is_object(v)) {
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it)) {
            json_t *k = json_stringn(json_object_iter_key(it), json_object_iter_key_len(it));
            if (!k)
                return 1;
            json_decref(k);
            if (json_has_bad_key(json_object_iter_value(it), depth + 1))
                return 1;
        }
    }
    return 0;
}

/*
 * jansson's text, or NULL when it refuses. One difference is meant: jansson does not check
 * that it could write an object's key, and for a key that is not UTF-8 writes a broken text
 * ("{\":1}"); ours refuses the tree. Such a tree counts as one jansson refuses.
 */
static inline char *json_write_reference(const json_t *v, int precision)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(precision));
    if (s && json_has_bad_key(v, 0)) {
        free(s);
        return NULL;
    }
    return s;
}

#endif

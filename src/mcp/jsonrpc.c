#include "mcp/jsonrpc.h"
void mcp_batch_free(struct mcp_batch *batch)
{
    for (size_t i = 0; i < batch->n; i++)
        json_decref(batch->msgs[i].json);
    free(batch->msgs);
    batch->msgs = NULL;
    batch->n = 0;
}

/**
 * The dense part of a MoE language model and its forward pass with a KV cache: the in-process
 * reference that the router's generation is checked against. {@link dev.moecluster.core.runner.DecoderModel}
 * runs embeddings, attention, norms, dense MLPs and the LM head, and calls
 * {@link dev.moecluster.core.runner.MoeLayers} for the sparse blocks, in-process or remote.
 */
package dev.moecluster.core.runner;

package dev.moecluster.core.model;

import java.util.List;

/** The MoE model families the cluster serves, by their Hugging Face architecture names. */
public enum Architecture {
    MIXTRAL("mixtral", List.of("MixtralForCausalLM")),
    QWEN3_MOE("qwen3-moe", List.of("Qwen3MoeForCausalLM")),
    QWEN2_MOE("qwen2-moe", List.of("Qwen2MoeForCausalLM")),
    LLAMA4("llama4", List.of("Llama4ForCausalLM", "Llama4ForConditionalGeneration")),
    DEEPSEEK_V3("deepseek-v3", List.of("DeepseekV3ForCausalLM"));

    private final String cliName;
    private final List<String> hfNames;

    Architecture(String cliName, List<String> hfNames) {
        this.cliName = cliName;
        this.hfNames = hfNames;
    }

    /** The short name used on the command line, e.g. {@code qwen3-moe}. */
    public String cliName() {
        return cliName;
    }

    /** The name written to {@code config.json}'s {@code architectures} for a text-only model. */
    public String hfName() {
        return hfNames.getFirst();
    }

    public static Architecture fromHf(String name) {
        for (Architecture a : values()) {
            if (a.hfNames.contains(name)) {
                return a;
            }
        }
        throw new IllegalArgumentException("unsupported architecture " + name
                + " (supported: Mixtral, Qwen2-MoE, Qwen3-MoE, Llama 4, DeepSeek-V3)");
    }

    public static Architecture fromCli(String name) {
        for (Architecture a : values()) {
            if (a.cliName.equalsIgnoreCase(name)) {
                return a;
            }
        }
        throw new IllegalArgumentException("unknown --arch " + name + " (use mixtral, qwen3-moe, qwen2-moe, llama4 or deepseek-v3)");
    }
}

package dev.moecluster.core.placement;

import dev.moecluster.core.model.ModelConfig;
import java.util.Collections;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/** The experts one worker holds, by MoE layer. */
public record ExpertAssignment(Map<Integer, Set<Integer>> byLayer) {
    public ExpertAssignment {
        Map<Integer, Set<Integer>> copy = new TreeMap<>();
        byLayer.forEach((l, es) -> copy.put(l, Collections.unmodifiableSet(new TreeSet<>(es))));
        byLayer = Collections.unmodifiableMap(copy);
    }

    public boolean holds(int layer, int expert) {
        Set<Integer> es = byLayer.get(layer);
        return es != null && es.contains(expert);
    }

    public int expertCount() {
        return byLayer.values().stream().mapToInt(Set::size).sum();
    }

    /**
     * Parses an {@code --experts} spec against a model: {@code all}; a list of experts for every MoE
     * layer ({@code 0-3,6}); or per layer, {@code 1:0-3;3:4-7}.
     */
    public static ExpertAssignment parse(String spec, ModelConfig config) {
        Map<Integer, Set<Integer>> byLayer = new TreeMap<>();
        String s = spec.trim();
        if (s.equalsIgnoreCase("all")) {
            for (int l : config.moeLayerList()) {
                byLayer.put(l, range(0, config.numExperts() - 1));
            }
            return new ExpertAssignment(byLayer);
        }
        if (!s.contains(":")) {
            Set<Integer> experts = experts(s, config);
            for (int l : config.moeLayerList()) {
                byLayer.put(l, experts);
            }
            return new ExpertAssignment(byLayer);
        }
        for (String part : s.split(";")) {
            String[] kv = part.split(":", 2);
            int layer;
            try {
                layer = Integer.parseInt(kv[0].trim());
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("bad layer '" + kv[0] + "' in --experts " + spec);
            }
            if (!config.isMoeLayer(layer)) {
                throw new IllegalArgumentException("layer " + layer + " in --experts is not a MoE layer (MoE layers: "
                        + config.moeLayerList() + ")");
            }
            byLayer.put(layer, experts(kv[1], config));
        }
        return new ExpertAssignment(byLayer);
    }

    private static Set<Integer> experts(String list, ModelConfig config) {
        Set<Integer> out = new TreeSet<>();
        for (String item : list.split(",")) {
            String t = item.trim();
            try {
                if (t.contains("-")) {
                    String[] ab = t.split("-", 2);
                    out.addAll(range(Integer.parseInt(ab[0].trim()), Integer.parseInt(ab[1].trim())));
                } else {
                    out.add(Integer.parseInt(t));
                }
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("bad expert '" + t + "' in --experts (use e.g. 0-3,6)");
            }
        }
        for (int e : out) {
            if (e < 0 || e >= config.numExperts()) {
                throw new IllegalArgumentException("expert " + e + " out of range: the model has " + config.numExperts()
                        + " experts (0.." + (config.numExperts() - 1) + ")");
            }
        }
        return out;
    }

    private static Set<Integer> range(int from, int to) {
        Set<Integer> s = new TreeSet<>();
        for (int i = from; i <= to; i++) {
            s.add(i);
        }
        return s;
    }
}

package dev.moecluster.helm;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.PodTemplateSpec;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.api.model.autoscaling.v2.HorizontalPodAutoscaler;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicy;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.reflect.Method;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;

/**
 * What {@code helm template} printed, parsed into fabric8 Kubernetes model objects. Parsing is strict:
 * a field the model does not know (fabric8 keeps those aside as "additional properties") fails, so a
 * misspelt or misplaced field in a template fails the tests instead of being dropped by the API server.
 */
final class RenderedObjects {
    /** Every kind the chart renders, with its apiVersion and model class. */
    private static final Map<String, Kind> KINDS = Map.of(
            "Service", new Kind("v1", Service.class),
            "ConfigMap", new Kind("v1", ConfigMap.class),
            "StatefulSet", new Kind("apps/v1", StatefulSet.class),
            "Deployment", new Kind("apps/v1", Deployment.class),
            "HorizontalPodAutoscaler", new Kind("autoscaling/v2", HorizontalPodAutoscaler.class),
            "PodDisruptionBudget", new Kind("policy/v1", PodDisruptionBudget.class),
            "NetworkPolicy", new Kind("networking.k8s.io/v1", NetworkPolicy.class),
            // no model class among the fabric8 artifacts: checked as a generic resource
            "ServiceMonitor", new Kind("monitoring.coreos.com/v1", GenericKubernetesResource.class),
            "PrometheusRule", new Kind("monitoring.coreos.com/v1", GenericKubernetesResource.class));

    private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

    private record Kind(String apiVersion, Class<? extends HasMetadata> type) {}

    private final List<HasMetadata> objects;

    private RenderedObjects(List<HasMetadata> objects) {
        this.objects = List.copyOf(objects);
    }

    /** Parses every YAML document; fails on a kind, apiVersion or field the chart should not render. */
    static RenderedObjects parse(String yaml) {
        List<HasMetadata> objects = new ArrayList<>();
        try (var docs = YAML.readerFor(JsonNode.class).<JsonNode>readValues(yaml)) {
            while (docs.hasNext()) {
                JsonNode doc = docs.next();
                if (doc == null || doc.isNull() || doc.isMissingNode() || doc.isEmpty()) {
                    continue;
                }
                String kindName = doc.path("kind").asText();
                Kind kind = KINDS.get(kindName);
                if (kind == null) {
                    throw new IllegalStateException("the chart rendered an unexpected kind '" + kindName + "'");
                }
                if (!kind.apiVersion().equals(doc.path("apiVersion").asText())) {
                    throw new IllegalStateException(kindName + " has apiVersion " + doc.path("apiVersion").asText()
                            + ", expected " + kind.apiVersion());
                }
                HasMetadata object = YAML.treeToValue(doc, kind.type());
                List<String> unknown = new ArrayList<>();
                // a generic resource holds everything but its metadata as additional properties
                collectUnknownFields(object instanceof GenericKubernetesResource g ? g.getMetadata() : object, kindName, unknown);
                if (!unknown.isEmpty()) {
                    throw new IllegalStateException(kindName + " " + object.getMetadata().getName()
                            + " has fields Kubernetes does not know: " + unknown);
                }
                objects.add(object);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("rendered YAML does not parse as Kubernetes objects", e);
        }
        return new RenderedObjects(objects);
    }

    /** Walks a fabric8 model object and names every field that landed in additional properties. */
    private static void collectUnknownFields(Object value, String path, List<String> out) {
        switch (value) {
            case null -> { }
            case List<?> list -> {
                for (int i = 0; i < list.size(); i++) {
                    collectUnknownFields(list.get(i), path + "[" + i + "]", out);
                }
            }
            case Map<?, ?> map -> map.forEach((k, v) -> collectUnknownFields(v, path + "." + k, out));
            default -> {
                if (!value.getClass().getPackageName().startsWith("io.fabric8.kubernetes.api.model")) {
                    return;
                }
                for (Method getter : value.getClass().getMethods()) {
                    if (getter.getParameterCount() != 0 || !getter.getName().startsWith("get")
                            || getter.getDeclaringClass() == Object.class) {
                        continue;
                    }
                    Object child;
                    try {
                        child = getter.invoke(value);
                    } catch (ReflectiveOperationException e) {
                        throw new IllegalStateException("cannot read " + path + " through " + getter, e);
                    }
                    if (getter.getName().equals("getAdditionalProperties")) {
                        if (child instanceof Map<?, ?> extra) {
                            extra.keySet().forEach(k -> out.add(path + "." + k));
                        }
                    } else {
                        collectUnknownFields(child, path + "." + getter.getName().substring(3), out);
                    }
                }
            }
        }
    }

    List<HasMetadata> all() {
        return objects;
    }

    /** Every object of this type, in rendering order. */
    <T extends HasMetadata> List<T> all(Class<T> type) {
        return objects.stream().filter(type::isInstance).map(type::cast).toList();
    }

    /** Every object of this kind, by kind name (for kinds without a model class). */
    List<HasMetadata> ofKind(String kind) {
        return objects.stream().filter(o -> o.getKind().equals(kind)).toList();
    }

    /** The pod template of the StatefulSet or Deployment with this name. */
    PodTemplateSpec podTemplate(String workload) {
        List<PodTemplateSpec> templates = new ArrayList<>();
        all(StatefulSet.class).stream().filter(s -> s.getMetadata().getName().equals(workload))
                .forEach(s -> templates.add(s.getSpec().getTemplate()));
        all(Deployment.class).stream().filter(d -> d.getMetadata().getName().equals(workload))
                .forEach(d -> templates.add(d.getSpec().getTemplate()));
        if (templates.size() != 1) {
            throw new NoSuchElementException(templates.size() + " workloads named " + workload);
        }
        return templates.getFirst();
    }

    /** The only container of that workload's pods. */
    Container container(String workload) {
        List<Container> containers = podTemplate(workload).getSpec().getContainers();
        if (containers.size() != 1) {
            throw new IllegalStateException(workload + " has " + containers.size() + " containers, expected 1");
        }
        return containers.getFirst();
    }

    /** The value after {@code flag} in the container's args; fails when the flag is absent or repeated. */
    static String flag(Container container, String flag) {
        List<String> args = container.getArgs();
        int at = args.indexOf(flag);
        if (at < 0 || at == args.size() - 1 || args.lastIndexOf(flag) != at) {
            throw new AssertionError(container.getName() + " should pass " + flag + " once with a value: " + args);
        }
        return args.get(at + 1);
    }

    /** The object of this type and name. */
    <T extends HasMetadata> T get(Class<T> type, String name) {
        return all(type).stream().filter(o -> o.getMetadata().getName().equals(name)).findFirst()
                .orElseThrow(() -> new NoSuchElementException("no " + type.getSimpleName() + " named " + name
                        + " among " + all(type).stream().map(o -> o.getMetadata().getName()).toList()));
    }
}

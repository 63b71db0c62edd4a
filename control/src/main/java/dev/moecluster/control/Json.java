package dev.moecluster.control;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;

/** The one JSON codec for control-plane records. */
final class Json {
    static final Gson GSON = new GsonBuilder().disableHtmlEscaping().enableComplexMapKeySerialization().create();

    private Json() {}
}

package dev.apikeyportal.keycloak;

import java.net.URI;
import java.net.URISyntaxException;
import java.time.Duration;
import java.util.List;
import java.util.function.Function;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.provider.ProviderConfigurationBuilder;

/** The listener's options, read from Keycloak's SPI configuration and checked once at start. */
record Settings(
    URI url,
    byte[] signingKey,
    String clientPrefix,
    int queueSize,
    int batchSize,
    int maxAttempts,
    Duration timeout) {

  static final String URL = "url";
  static final String SECRET = "secret";
  static final String CLIENT_PREFIX = "client-prefix";
  static final String QUEUE_SIZE = "queue-size";
  static final String BATCH_SIZE = "batch-size";
  static final String MAX_ATTEMPTS = "max-attempts";
  static final String TIMEOUT_MS = "timeout-ms";

  static final String DEFAULT_CLIENT_PREFIX = "apikey-";
  static final int DEFAULT_QUEUE_SIZE = 10_000;
  static final int DEFAULT_BATCH_SIZE = 100;
  static final int DEFAULT_MAX_ATTEMPTS = 6;
  static final int DEFAULT_TIMEOUT_MS = 10_000;

  /**
   * Settings from {@code option} (an option's name to its value, or null when unset).
   *
   * @throws IllegalArgumentException naming the option that is missing or wrong (never quoting the
   *     secret)
   */
  static Settings from(Function<String, String> option) {
    return new Settings(
        urlOf(required(option, URL)),
        WebhookSignature.keyOf(required(option, SECRET)),
        orDefault(option.apply(CLIENT_PREFIX), DEFAULT_CLIENT_PREFIX),
        positive(option, QUEUE_SIZE, DEFAULT_QUEUE_SIZE),
        positive(option, BATCH_SIZE, DEFAULT_BATCH_SIZE),
        positive(option, MAX_ATTEMPTS, DEFAULT_MAX_ATTEMPTS),
        Duration.ofMillis(positive(option, TIMEOUT_MS, DEFAULT_TIMEOUT_MS)));
  }

  /** The options as Keycloak lists them (kc.sh show-config, the admin console's provider info). */
  static List<ProviderConfigProperty> metadata() {
    return ProviderConfigurationBuilder.create()
        .property()
        .name(URL)
        .type(ProviderConfigProperty.STRING_TYPE)
        .required(true)
        .helpText(
            "The portal's endpoint that receives the events (POST, JSON), "
                + "e.g. https://portal.example.com/keycloak/events. Without it nothing is sent.")
        .add()
        .property()
        .name(SECRET)
        .type(ProviderConfigProperty.PASSWORD)
        .secret(true)
        .required(true)
        .helpText(
            "The Standard Webhooks signing secret shared with the portal: whsec_ followed "
                + "by base64.")
        .add()
        .property()
        .name(CLIENT_PREFIX)
        .type(ProviderConfigProperty.STRING_TYPE)
        .defaultValue(DEFAULT_CLIENT_PREFIX)
        .helpText(
            "CLIENT_LOGIN and CLIENT_LOGIN_ERROR events are sent only for client ids "
                + "starting with this.")
        .add()
        .property()
        .name(QUEUE_SIZE)
        .type(ProviderConfigProperty.INTEGER_TYPE)
        .defaultValue(DEFAULT_QUEUE_SIZE)
        .helpText(
            "Events held in memory while waiting to be sent; when full, new events are dropped.")
        .add()
        .property()
        .name(BATCH_SIZE)
        .type(ProviderConfigProperty.INTEGER_TYPE)
        .defaultValue(DEFAULT_BATCH_SIZE)
        .helpText("At most this many waiting events go in one request.")
        .add()
        .property()
        .name(MAX_ATTEMPTS)
        .type(ProviderConfigProperty.INTEGER_TYPE)
        .defaultValue(DEFAULT_MAX_ATTEMPTS)
        .helpText(
            "Attempts to deliver a batch (after a network error, a timeout, 408, 429 or 5xx), "
                + "1 s apart and doubling up to 30 s, before it is dropped.")
        .add()
        .property()
        .name(TIMEOUT_MS)
        .type(ProviderConfigProperty.INTEGER_TYPE)
        .defaultValue(DEFAULT_TIMEOUT_MS)
        .helpText("Connect timeout and request timeout of one attempt, in milliseconds.")
        .add()
        .build();
  }

  /** Where events go, without user info or query, for log lines. */
  String destination() {
    return url.getScheme()
        + "://"
        + url.getHost()
        + (url.getPort() == -1 ? "" : ":" + url.getPort())
        + (url.getPath() == null ? "" : url.getPath());
  }

  @Override
  public String toString() {
    return "Settings[url="
        + destination()
        + ", clientPrefix="
        + clientPrefix
        + ", queueSize="
        + queueSize
        + ", batchSize="
        + batchSize
        + ", maxAttempts="
        + maxAttempts
        + ", timeout="
        + timeout
        + "]";
  }

  private static String required(Function<String, String> option, String name) {
    String value = option.apply(name);
    if (value == null || value.isBlank()) {
      throw new IllegalArgumentException("the option " + name + " is not set");
    }
    return value.strip();
  }

  private static URI urlOf(String value) {
    try {
      URI url = new URI(value);
      if (!("http".equals(url.getScheme()) || "https".equals(url.getScheme()))
          || url.getHost() == null) {
        throw new IllegalArgumentException("the option url must be an http:// or https:// URL");
      }
      return url;
    } catch (URISyntaxException e) {
      throw new IllegalArgumentException("the option url is not a URL");
    }
  }

  private static int positive(Function<String, String> option, String name, int fallback) {
    String value = option.apply(name);
    if (value == null || value.isBlank()) {
      return fallback;
    }
    try {
      int number = Integer.parseInt(value.strip());
      if (number > 0) {
        return number;
      }
    } catch (NumberFormatException e) {
      // reported below, with the same message as a number below 1
    }
    throw new IllegalArgumentException("the option " + name + " must be a whole number above 0");
  }

  private static String orDefault(String value, String fallback) {
    return value == null || value.isBlank() ? fallback : value.strip();
  }
}

package dev.apikeyportal.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SettingsTest {

  private static final String SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

  @Test
  void itHasTheDocumentedDefaults() {
    Settings settings = Settings.from(options(Map.of())::get);

    assertEquals("apikey-", settings.clientPrefix());
    assertEquals(10_000, settings.queueSize());
    assertEquals(100, settings.batchSize());
    assertEquals(6, settings.maxAttempts());
    assertEquals(Duration.ofSeconds(10), settings.timeout());
  }

  @Test
  void itReadsEveryOption() {
    Settings settings =
        Settings.from(
            options(
                    Map.of(
                        "client-prefix",
                        "key-",
                        "queue-size",
                        "5",
                        "batch-size",
                        "2",
                        "max-attempts",
                        "3",
                        "timeout-ms",
                        "250"))
                ::get);

    assertEquals("key-", settings.clientPrefix());
    assertEquals(5, settings.queueSize());
    assertEquals(2, settings.batchSize());
    assertEquals(3, settings.maxAttempts());
    assertEquals(Duration.ofMillis(250), settings.timeout());
  }

  @Test
  void itRequiresASecret() {
    Map<String, String> options = options(Map.of());
    options.remove("secret");

    assertThrows(IllegalArgumentException.class, () -> Settings.from(options::get));
  }

  @Test
  void itRefusesAnUrlThatIsNotHttp() {
    assertThrows(
        IllegalArgumentException.class,
        () -> Settings.from(options(Map.of("url", "ftp://portal.example/events"))::get));
  }

  @Test
  void itRefusesNumbersBelowOne() {
    var e =
        assertThrows(
            IllegalArgumentException.class,
            () -> Settings.from(options(Map.of("batch-size", "0"))::get));

    assertEquals("the option batch-size must be a whole number above 0", e.getMessage());
  }

  @Test
  void itNeverShowsTheSecretOrTheUrlsCredentials() {
    Settings settings =
        Settings.from(options(Map.of("url", "https://u:pw@portal.example/events?t=x"))::get);

    assertEquals("https://portal.example/events", settings.destination());
    assertFalse(settings.toString().contains("pw"));
    assertFalse(settings.toString().contains("MfKQ9r8G"));
  }

  private static Map<String, String> options(Map<String, String> given) {
    Map<String, String> options =
        new HashMap<>(Map.of("url", "http://127.0.0.1:1/events", "secret", SECRET));
    options.putAll(given);
    return options;
  }
}

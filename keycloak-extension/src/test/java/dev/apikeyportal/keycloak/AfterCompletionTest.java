package dev.apikeyportal.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class AfterCompletionTest {

  private final List<JsonNode> queued = new ArrayList<>();
  private ApiKeyPortalEventListener.AfterCompletion transaction;

  @BeforeEach
  void begin() {
    transaction = new ApiKeyPortalEventListener.AfterCompletion(queued::add);
    transaction.begin();
    transaction.add(named("user updated"), false);
    transaction.add(named("wrong secret"), true);
  }

  @Test
  void itQueuesNothingBeforeTheTransactionEnds() {
    assertEquals(List.of(), queued);
  }

  @Test
  void itQueuesEveryEventOnCommit() {
    transaction.commit();

    assertEquals(List.of(named("user updated"), named("wrong secret")), queued);
  }

  @Test
  void itQueuesOnlyFailedAttemptsOnRollback() {
    transaction.rollback();

    assertEquals(List.of(named("wrong secret")), queued);
  }

  @Test
  void aQueueThatThrowsDoesNotReachKeycloak() {
    var failing =
        new ApiKeyPortalEventListener.AfterCompletion(
            event -> {
              throw new IllegalStateException("full");
            });
    failing.begin();
    failing.add(named("user updated"), false);

    failing.commit();
  }

  private static JsonNode named(String name) {
    return JsonNodeFactory.instance.objectNode().put("name", name);
  }
}

using System.Text.Json;

namespace Lamina.Server.DynamoDb;

/// <summary>
/// A DynamoDB error, answered as the service sends it: HTTP 400 (500 for InternalServerError) with
/// <c>{"__type":"com.amazonaws.dynamodb.v20120810#Code","message":…}</c>. Thrown inside a request and caught by the
/// API's dispatcher, so the code that validates reads top to bottom; nothing is written before it is thrown.
/// </summary>
internal sealed class DynamoException(string code, string message, int status = 400, Exception? inner = null) : Exception(message, inner)
{
    public string Code { get; } = code;
    public int Status { get; } = status;

    /// <summary>Members beyond <c>message</c>: CancellationReasons, Item (ReturnValuesOnConditionCheckFailure).</summary>
    public Action<Utf8JsonWriter>? WriteExtra { get; init; }

    /// <summary>Validation errors come from coral's validator in the real service, not the DynamoDB model.</summary>
    public string TypeName => Code is "ValidationException" or "SerializationException"
        ? (Code == "ValidationException" ? "com.amazon.coral.validate#ValidationException" : "com.amazon.coral.service#SerializationException")
        : "com.amazonaws.dynamodb.v20120810#" + Code;

    public static DynamoException Validation(string message) => new("ValidationException", message);

    public static DynamoException NotFound(string message = "Requested resource not found") => new("ResourceNotFoundException", message);

    public static DynamoException InUse(string message) => new("ResourceInUseException", message);

    public static DynamoException ConditionalCheckFailed(IReadOnlyDictionary<string, AttributeValue>? item = null) =>
        new("ConditionalCheckFailedException", "The conditional request failed")
        {
            WriteExtra = item is null ? null : w =>
            {
                w.WritePropertyName("Item");
                AttributeValue.WriteMap(w, item);
            },
        };
}

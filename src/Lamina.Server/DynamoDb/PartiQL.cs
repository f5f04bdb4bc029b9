namespace Lamina.Server.DynamoDb;

internal static partial class DynamoDbApi
{
    private static Task ExecuteStatementAsync(DynamoCall call) =>
        throw DynamoException.Validation("Lamina does not implement PartiQL statements yet; use GetItem, PutItem, UpdateItem, DeleteItem, Query or Scan.");
}

using System.Text.Json;
using Item = System.Collections.Generic.Dictionary<string, Lamina.Server.DynamoDb.AttributeValue>;

namespace Lamina.Server.DynamoDb;

internal static partial class DynamoDbApi
{
    private static readonly Item EmptyItem = new(StringComparer.Ordinal);

    private static async Task PutItemAsync(DynamoCall call)
    {
        RefuseLegacy(call, "Expected", "ConditionalOperator");
        var table = call.Table();
        var item = AttributeValue.ParseMap(call.Element("Item")
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'item' failed to satisfy constraint: Member must not be null"));
        ValidateItem(table, item);
        var returnValues = ReturnValues(call, "NONE", "ALL_OLD");
        var expressions = DynamoCall.Expressions(call.Request);
        var condition = ParseCondition(call.Request, expressions);
        expressions.CheckAllUsed();
        var returnOnFailure = call.String("ReturnValuesOnConditionCheckFailure") == "ALL_OLD";
        var key = ItemKey.Of(table, item);
        var old = await call.Store.WriteAsync(context =>
        {
            var current = context.Current(table);
            ValidateItem(current, item);
            var old = DynamoStore.Get(context, current, key);
            if (condition is not null && !ExpressionEvaluator.Matches(condition, old ?? EmptyItem))
            {
                throw DynamoException.ConditionalCheckFailed(returnOnFailure ? old : null);
            }
            DynamoStore.Put(context, current, key, item, old);
            return old;
        }, table);
        await call.RespondAsync(w =>
        {
            if (returnValues == "ALL_OLD" && old is not null)
            {
                WriteItem(w, "Attributes", old);
            }
            WriteConsumedCapacity(w, call, table.Name, WriteUnits(Math.Max(AttributeValue.ItemSize(item), old is null ? 0 : AttributeValue.ItemSize(old))));
        });
    }

    private static async Task GetItemAsync(DynamoCall call)
    {
        var table = call.Table();
        var key = ParseKey(table, call.Element("Key"));
        var expressions = DynamoCall.Expressions(call.Request);
        var projection = ParseProjection(call.Request, expressions);
        expressions.CheckAllUsed();
        var consistent = call.Bool("ConsistentRead") ?? false;
        ItemRow? row;
        using (var connection = call.Store.OpenRead())
        {
            row = DynamoStore.ReadItem(connection, table, ItemKey.Of(table, key));
        }
        await call.RespondAsync(w =>
        {
            if (row is { } found)
            {
                if (projection is null)
                {
                    // The stored JSON is the wire form: written as is, not parsed and re-serialised.
                    w.WritePropertyName("Item");
                    w.WriteRawValue(found.Json, skipInputValidation: true);
                }
                else
                {
                    WriteItem(w, "Item", ExpressionEvaluator.Project(projection, found.Item));
                }
            }
            WriteConsumedCapacity(w, call, table.Name, ReadUnits(row?.Size ?? 0, consistent));
        });
    }

    private static async Task UpdateItemAsync(DynamoCall call)
    {
        RefuseLegacy(call, "AttributeUpdates", "Expected", "ConditionalOperator");
        var table = call.Table();
        var key = ParseKey(table, call.Element("Key"));
        var returnValues = ReturnValues(call, "NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW");
        var expressions = DynamoCall.Expressions(call.Request);
        var actions = call.String("UpdateExpression") is { } text ? ExpressionParser.ParseUpdate(text, expressions) : [];
        var condition = ParseCondition(call.Request, expressions);
        expressions.CheckAllUsed();
        CheckUpdatePaths(table, actions);
        var returnOnFailure = call.String("ReturnValuesOnConditionCheckFailure") == "ALL_OLD";
        var itemKey = ItemKey.Of(table, key);
        var (old, updated) = await call.Store.WriteAsync(context =>
        {
            var current = context.Current(table);
            CheckUpdatePaths(current, actions);
            var old = DynamoStore.Get(context, current, itemKey);
            if (condition is not null && !ExpressionEvaluator.Matches(condition, old ?? EmptyItem))
            {
                throw DynamoException.ConditionalCheckFailed(returnOnFailure ? old : null);
            }
            var updated = ExpressionEvaluator.ApplyUpdate(actions, old ?? key);
            ValidateItem(current, updated);
            DynamoStore.Put(context, current, itemKey, updated, old);
            return (old, updated);
        }, table);
        await call.RespondAsync(w =>
        {
            switch (returnValues)
            {
                case "ALL_OLD" when old is not null:
                    WriteItem(w, "Attributes", old);
                    break;
                case "ALL_NEW":
                    WriteItem(w, "Attributes", updated);
                    break;
                case "UPDATED_OLD" when old is not null:
                    var before = ExpressionEvaluator.Project(ExpressionEvaluator.UpdatedPaths(actions), old);
                    if (before.Count > 0)
                    {
                        WriteItem(w, "Attributes", before);
                    }
                    break;
                case "UPDATED_NEW":
                    var after = ExpressionEvaluator.Project(ExpressionEvaluator.UpdatedPaths(actions), updated);
                    if (after.Count > 0)
                    {
                        WriteItem(w, "Attributes", after);
                    }
                    break;
            }
            WriteConsumedCapacity(w, call, table.Name, WriteUnits(Math.Max(AttributeValue.ItemSize(updated), old is null ? 0 : AttributeValue.ItemSize(old))));
        });
    }

    private static async Task DeleteItemAsync(DynamoCall call)
    {
        RefuseLegacy(call, "Expected", "ConditionalOperator");
        var table = call.Table();
        var key = ParseKey(table, call.Element("Key"));
        var returnValues = ReturnValues(call, "NONE", "ALL_OLD");
        var expressions = DynamoCall.Expressions(call.Request);
        var condition = ParseCondition(call.Request, expressions);
        expressions.CheckAllUsed();
        var returnOnFailure = call.String("ReturnValuesOnConditionCheckFailure") == "ALL_OLD";
        var itemKey = ItemKey.Of(table, key);
        var old = await call.Store.WriteAsync(context =>
        {
            var current = context.Current(table);
            var old = DynamoStore.Get(context, current, itemKey);
            if (condition is not null && !ExpressionEvaluator.Matches(condition, old ?? EmptyItem))
            {
                throw DynamoException.ConditionalCheckFailed(returnOnFailure ? old : null);
            }
            if (old is not null)
            {
                DynamoStore.Delete(context, current, itemKey, old);
            }
            return old;
        }, table);
        await call.RespondAsync(w =>
        {
            if (returnValues == "ALL_OLD" && old is not null)
            {
                WriteItem(w, "Attributes", old);
            }
            WriteConsumedCapacity(w, call, table.Name, WriteUnits(old is null ? 0 : AttributeValue.ItemSize(old)));
        });
    }

    private static string ReturnValues(DynamoCall call, params string[] allowed)
    {
        var value = call.String("ReturnValues") ?? "NONE";
        if (!new[] { "NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW" }.Contains(value))
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{value}' at 'returnValues' failed to satisfy constraint: Member must satisfy enum value set: [ALL_NEW, UPDATED_OLD, ALL_OLD, NONE, UPDATED_NEW]");
        }
        if (!allowed.Contains(value))
        {
            throw DynamoException.Validation("ReturnValues can only be ALL_OLD or NONE");
        }
        var onFailure = call.String("ReturnValuesOnConditionCheckFailure");
        if (onFailure is not (null or "NONE" or "ALL_OLD"))
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{onFailure}' at 'returnValuesOnConditionCheckFailure' failed to satisfy constraint: Member must satisfy enum value set: [ALL_OLD, NONE]");
        }
        return value;
    }

    private static Condition? ParseCondition(JsonElement parent, ExpressionContext expressions, string member = "ConditionExpression") =>
        DynamoCall.String(parent, member) is { } text ? ExpressionParser.ParseCondition(text, member, expressions) : null;

    /// <summary>ProjectionExpression, or the legacy AttributesToGet (a list of top-level names).</summary>
    private static List<DocumentPath>? ParseProjection(JsonElement parent, ExpressionContext expressions)
    {
        if (DynamoCall.String(parent, "ProjectionExpression") is { } text)
        {
            if (DynamoCall.Element(parent, "AttributesToGet") is not null)
            {
                throw DynamoException.Validation("Can not use both expression and non-expression parameters in the same request: Non-expression parameters: {AttributesToGet} Expression parameters: {ProjectionExpression}");
            }
            return ExpressionParser.ParseProjection(text, expressions);
        }
        if (DynamoCall.Element(parent, "AttributesToGet") is { ValueKind: JsonValueKind.Array } names)
        {
            return [.. names.EnumerateArray().Select(static n => new DocumentPath([new PathElement(n.GetString() ?? "", 0)]))];
        }
        return null;
    }

    /// <summary>An update may not touch the key attributes, nor reach into an index key.</summary>
    private static void CheckUpdatePaths(TableInfo table, IReadOnlyList<UpdateAction> actions)
    {
        foreach (var action in actions)
        {
            if (table.IsKey(action.Path.Head))
            {
                throw DynamoException.Validation($"One or more parameter values were invalid: Cannot update attribute {action.Path.Head}. This attribute is part of the key");
            }
            if (action.Path.IsNested && table.Indexes.Any(i => i.Hash.Name == action.Path.Head || i.Range?.Name == action.Path.Head))
            {
                throw DynamoException.Validation($"Key attributes must be scalars; list random access '[]' and map lookup '.' are not allowed: IndexKey: {action.Path.Head}");
            }
        }
    }
}

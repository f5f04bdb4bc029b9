using System.Text;
using Item = System.Collections.Generic.Dictionary<string, Lamina.Server.DynamoDb.AttributeValue>;

namespace Lamina.Server.DynamoDb;

/// <summary>
/// Evaluates parsed expressions against an item: conditions and filters (true or false, never an error: a missing
/// attribute or a type mismatch makes a comparison false), updates (a new item; DynamoDB's runtime errors such as
/// "The document path provided in the update expression is invalid for update") and projections.
/// </summary>
internal static class ExpressionEvaluator
{
    public static AttributeValue? Resolve(DocumentPath path, IReadOnlyDictionary<string, AttributeValue> item)
    {
        if (!item.TryGetValue(path.Head, out var current))
        {
            return null;
        }
        for (var i = 1; i < path.Elements.Count; i++)
        {
            var element = path.Elements[i];
            if (element.IsIndex)
            {
                if (current.Kind != AttributeKind.L || element.Index >= current.L.Count)
                {
                    return null;
                }
                current = current.L[element.Index];
            }
            else
            {
                if (current.Kind != AttributeKind.M || !current.M.TryGetValue(element.Name!, out var next))
                {
                    return null;
                }
                current = next;
            }
        }
        return current;
    }

    /// <summary>An operand's value in a condition: a path's value, a placeholder's value, or size(path).</summary>
    private static AttributeValue? Value(Operand operand, IReadOnlyDictionary<string, AttributeValue> item) => operand switch
    {
        ValueOperand value => value.Value,
        PathOperand path => Resolve(path.Path, item),
        FunctionOperand { Name: "size" } size => Value(size.Arguments[0], item) is { } sized ? SizeOf(sized) : null,
        _ => null,
    };

    private static AttributeValue? SizeOf(AttributeValue value) => value.Kind switch
    {
        AttributeKind.S => AttributeValue.FromNumber(DynamoNumber.FromInt64(value.S.Length)),
        AttributeKind.B => AttributeValue.FromNumber(DynamoNumber.FromInt64(value.B.Length)),
        AttributeKind.L or AttributeKind.M or AttributeKind.SS or AttributeKind.NS or AttributeKind.BS => AttributeValue.FromNumber(DynamoNumber.FromInt64(value.Count)),
        _ => null,
    };

    public static bool Matches(Condition condition, IReadOnlyDictionary<string, AttributeValue> item)
    {
        switch (condition)
        {
            case Logical { Operator: "AND" } and:
                return Matches(and.Left, item) && Matches(and.Right!, item);
            case Logical { Operator: "OR" } or:
                return Matches(or.Left, item) || Matches(or.Right!, item);
            case Logical not:
                return !Matches(not.Left, item);
            case Comparison comparison:
            {
                var left = Value(comparison.Left, item);
                var right = Value(comparison.Right, item);
                if (comparison.Operator == "<>")
                {
                    return left is null || right is null || !left.Equals(right);
                }
                if (left is null || right is null)
                {
                    return false;
                }
                if (comparison.Operator == "=")
                {
                    return left.Equals(right);
                }
                var order = AttributeValue.Compare(left, right);
                return order is { } o && comparison.Operator switch
                {
                    "<" => o < 0,
                    "<=" => o <= 0,
                    ">" => o > 0,
                    _ => o >= 0,
                };
            }
            case Between between:
            {
                var value = Value(between.Value, item);
                var low = Value(between.Low, item);
                var high = Value(between.High, item);
                return value is not null && low is not null && high is not null
                    && AttributeValue.Compare(value, low) >= 0 && AttributeValue.Compare(value, high) <= 0;
            }
            case In @in:
            {
                var value = Value(@in.Value, item);
                return value is not null && @in.List.Any(o => Value(o, item) is { } candidate && value.Equals(candidate));
            }
            case FunctionCondition function:
                return MatchesFunction(function, item);
        }
        return false;
    }

    private static bool MatchesFunction(FunctionCondition function, IReadOnlyDictionary<string, AttributeValue> item)
    {
        var first = Value(function.Arguments[0], item);
        switch (function.Name)
        {
            case "attribute_exists":
                return first is not null;
            case "attribute_not_exists":
                return first is null;
            case "attribute_type":
                return first is not null && Value(function.Arguments[1], item) is { Kind: AttributeKind.S } type && first.Kind.ToString() == type.S;
            case "begins_with":
            {
                var prefix = Value(function.Arguments[1], item);
                if (first is null || prefix is null || first.Kind != prefix.Kind)
                {
                    return false;
                }
                return first.Kind switch
                {
                    AttributeKind.S => first.S.StartsWith(prefix.S, StringComparison.Ordinal),
                    AttributeKind.B => first.B.AsSpan().StartsWith(prefix.B),
                    _ => false,
                };
            }
            case "contains":
            {
                var operand = Value(function.Arguments[1], item);
                if (first is null || operand is null)
                {
                    return false;
                }
                return first.Kind switch
                {
                    AttributeKind.S => operand.Kind == AttributeKind.S && first.S.Contains(operand.S, StringComparison.Ordinal),
                    AttributeKind.B => operand.Kind == AttributeKind.B && first.B.AsSpan().IndexOf(operand.B) >= 0,
                    AttributeKind.SS => operand.Kind == AttributeKind.S && first.SS.Contains(operand.S, StringComparer.Ordinal),
                    AttributeKind.NS => operand.Kind == AttributeKind.N && first.NS.Contains(operand.Number),
                    AttributeKind.BS => operand.Kind == AttributeKind.B && first.BS.Any(b => b.AsSpan().SequenceEqual(operand.B)),
                    AttributeKind.L => first.L.Any(operand.Equals),
                    _ => false,
                };
            }
        }
        return false;
    }

    // ---- updates ----

    /// <summary>
    /// Applies an UpdateExpression to <paramref name="original"/> (empty for a new item). Every operand is evaluated
    /// against the original item, as DynamoDB does; REMOVEs of list elements go last and highest index first, so each
    /// index names the element it named in the original.
    /// </summary>
    public static Item ApplyUpdate(IReadOnlyList<UpdateAction> actions, IReadOnlyDictionary<string, AttributeValue> original)
    {
        var values = new AttributeValue?[actions.Count];
        for (var i = 0; i < actions.Count; i++)
        {
            var action = actions[i];
            values[i] = action.Kind switch
            {
                UpdateKind.Set => UpdateValue(action.Value!, original),
                UpdateKind.Add => Add(Resolve(action.Path, original), ((ValueOperand)action.Value!).Value),
                UpdateKind.Delete => DeleteFromSet(Resolve(action.Path, original), ((ValueOperand)action.Value!).Value),
                _ => null,
            };
        }
        var result = new Item(original, StringComparer.Ordinal);
        for (var i = 0; i < actions.Count; i++)
        {
            if (actions[i].Kind == UpdateKind.Remove)
            {
                continue;
            }
            if (values[i] is { } value)
            {
                SetPath(result, actions[i].Path, value);
            }
            else
            {
                RemovePath(result, actions[i].Path); // DELETE that emptied a set
            }
        }
        var removals = actions.Where(static a => a.Kind == UpdateKind.Remove)
            .OrderByDescending(static a => a.Path.Elements[^1].IsIndex ? a.Path.Elements[^1].Index : -1);
        foreach (var action in removals)
        {
            RemovePath(result, action.Path);
        }
        return result;
    }

    private static AttributeValue UpdateValue(Operand operand, IReadOnlyDictionary<string, AttributeValue> item)
    {
        switch (operand)
        {
            case ValueOperand value:
                return value.Value;
            case PathOperand path:
                return Resolve(path.Path, item) ?? throw MissingAttribute();
            case FunctionOperand { Name: "if_not_exists" } ifNotExists:
                return Resolve(((PathOperand)ifNotExists.Arguments[0]).Path, item) ?? UpdateValue(ifNotExists.Arguments[1], item);
            case FunctionOperand listAppend:
            {
                var a = UpdateValue(listAppend.Arguments[0], item);
                var b = UpdateValue(listAppend.Arguments[1], item);
                if (a.Kind != AttributeKind.L || b.Kind != AttributeKind.L)
                {
                    throw WrongType();
                }
                return AttributeValue.FromList([.. a.L, .. b.L]);
            }
            case ArithmeticOperand arithmetic:
            {
                var a = UpdateValue(arithmetic.Left, item);
                var b = UpdateValue(arithmetic.Right, item);
                if (a.Kind != AttributeKind.N || b.Kind != AttributeKind.N)
                {
                    throw WrongType();
                }
                return a.Number.TryAdd(arithmetic.Subtract ? b.Number.Negate() : b.Number, out var sum, out var error)
                    ? AttributeValue.FromNumber(sum)
                    : throw DynamoException.Validation(error!);
            }
        }
        throw WrongType();
    }

    private static AttributeValue Add(AttributeValue? current, AttributeValue operand)
    {
        if (current is null)
        {
            return operand;
        }
        if (current.Kind != operand.Kind)
        {
            throw WrongType();
        }
        switch (current.Kind)
        {
            case AttributeKind.N:
                return current.Number.TryAdd(operand.Number, out var sum, out var error) ? AttributeValue.FromNumber(sum) : throw DynamoException.Validation(error!);
            case AttributeKind.SS:
                return AttributeValue.FromStringSet([.. current.SS.Union(operand.SS, StringComparer.Ordinal)]);
            case AttributeKind.NS:
                return AttributeValue.FromNumberSet([.. current.NS.Union(operand.NS)]);
            case AttributeKind.BS:
                var bs = current.BS.ToList();
                bs.AddRange(operand.BS.Where(b => !bs.Any(x => x.AsSpan().SequenceEqual(b))));
                return AttributeValue.FromBinarySet(bs);
        }
        throw WrongType();
    }

    /// <summary>DELETE from a set; null when the set ends up empty (the attribute is removed, as DynamoDB does).</summary>
    private static AttributeValue? DeleteFromSet(AttributeValue? current, AttributeValue operand)
    {
        if (current is null)
        {
            return null;
        }
        if (current.Kind != operand.Kind)
        {
            throw WrongType();
        }
        AttributeValue result = current.Kind switch
        {
            AttributeKind.SS => AttributeValue.FromStringSet([.. current.SS.Except(operand.SS, StringComparer.Ordinal)]),
            AttributeKind.NS => AttributeValue.FromNumberSet([.. current.NS.Except(operand.NS)]),
            AttributeKind.BS => AttributeValue.FromBinarySet([.. current.BS.Where(b => !operand.BS.Any(x => x.AsSpan().SequenceEqual(b)))]),
            _ => throw WrongType(),
        };
        return result.Count == 0 ? null : result;
    }

    private static DynamoException MissingAttribute() =>
        DynamoException.Validation("The provided expression refers to an attribute that does not exist in the item");

    private static DynamoException WrongType() =>
        DynamoException.Validation("An operand in the update expression has an incorrect data type");

    private static DynamoException InvalidPath() =>
        DynamoException.Validation("The document path provided in the update expression is invalid for update");

    private static void SetPath(Item item, DocumentPath path, AttributeValue value)
    {
        if (!path.IsNested)
        {
            item[path.Head] = value;
            return;
        }
        if (!item.TryGetValue(path.Head, out var root))
        {
            throw InvalidPath();
        }
        item[path.Head] = SetIn(root, path, 1, value);
    }

    private static AttributeValue SetIn(AttributeValue container, DocumentPath path, int i, AttributeValue value)
    {
        var element = path.Elements[i];
        var last = i == path.Elements.Count - 1;
        if (element.IsIndex)
        {
            if (container.Kind != AttributeKind.L)
            {
                throw InvalidPath();
            }
            var list = container.L.ToList();
            if (last)
            {
                if (element.Index >= list.Count)
                {
                    list.Add(value); // past the end: appended, as DynamoDB does
                }
                else
                {
                    list[element.Index] = value;
                }
            }
            else
            {
                if (element.Index >= list.Count)
                {
                    throw InvalidPath();
                }
                list[element.Index] = SetIn(list[element.Index], path, i + 1, value);
            }
            return AttributeValue.FromList(list);
        }
        if (container.Kind != AttributeKind.M)
        {
            throw InvalidPath();
        }
        var map = new Item(container.M, StringComparer.Ordinal);
        if (last)
        {
            map[element.Name!] = value;
        }
        else
        {
            if (!map.TryGetValue(element.Name!, out var child))
            {
                throw InvalidPath();
            }
            map[element.Name!] = SetIn(child, path, i + 1, value);
        }
        return AttributeValue.FromMap(map);
    }

    private static void RemovePath(Item item, DocumentPath path)
    {
        if (!path.IsNested)
        {
            item.Remove(path.Head);
            return;
        }
        if (item.TryGetValue(path.Head, out var root))
        {
            item[path.Head] = RemoveIn(root, path, 1);
        }
    }

    private static AttributeValue RemoveIn(AttributeValue container, DocumentPath path, int i)
    {
        var element = path.Elements[i];
        var last = i == path.Elements.Count - 1;
        if (element.IsIndex)
        {
            if (container.Kind != AttributeKind.L)
            {
                throw InvalidPath();
            }
            if (element.Index >= container.L.Count)
            {
                return container;
            }
            var list = container.L.ToList();
            if (last)
            {
                list.RemoveAt(element.Index);
            }
            else
            {
                list[element.Index] = RemoveIn(list[element.Index], path, i + 1);
            }
            return AttributeValue.FromList(list);
        }
        if (container.Kind != AttributeKind.M)
        {
            throw InvalidPath();
        }
        if (!container.M.ContainsKey(element.Name!))
        {
            return container;
        }
        var map = new Item(container.M, StringComparer.Ordinal);
        if (last)
        {
            map.Remove(element.Name!);
        }
        else
        {
            map[element.Name!] = RemoveIn(map[element.Name!], path, i + 1);
        }
        return AttributeValue.FromMap(map);
    }

    // ---- projections ----

    /// <summary>The parts of <paramref name="item"/> the paths name, nested as in the item (list elements compacted).</summary>
    public static Item Project(IReadOnlyList<DocumentPath> paths, IReadOnlyDictionary<string, AttributeValue> item)
    {
        var result = new Item(StringComparer.Ordinal);
        // Built as a tree of selected positions, then materialised, so that a[1] and a[3] give a two-element list.
        var tree = new Node();
        foreach (var path in paths)
        {
            var node = tree;
            foreach (var element in path.Elements)
            {
                node = node.Child(element);
            }
            node.Whole = true;
        }
        foreach (var (element, child) in tree.Children)
        {
            if (item.TryGetValue(element.Name!, out var value) && Materialise(value, child) is { } projected)
            {
                result[element.Name!] = projected;
            }
        }
        return result;
    }

    private sealed class Node
    {
        public bool Whole { get; set; }
        public List<(PathElement Element, Node Node)> Children { get; } = [];

        public Node Child(PathElement element)
        {
            foreach (var (e, n) in Children)
            {
                if (e == element)
                {
                    return n;
                }
            }
            var node = new Node();
            Children.Add((element, node));
            return node;
        }
    }

    private static AttributeValue? Materialise(AttributeValue value, Node node)
    {
        if (node.Whole)
        {
            return value;
        }
        if (value.Kind == AttributeKind.M)
        {
            var map = new Item(StringComparer.Ordinal);
            foreach (var (element, child) in node.Children)
            {
                if (!element.IsIndex && value.M.TryGetValue(element.Name!, out var member) && Materialise(member, child) is { } projected)
                {
                    map[element.Name!] = projected;
                }
            }
            return map.Count == 0 ? null : AttributeValue.FromMap(map);
        }
        if (value.Kind == AttributeKind.L)
        {
            var list = new List<AttributeValue>();
            foreach (var (element, child) in node.Children.Where(static c => c.Element.IsIndex).OrderBy(static c => c.Element.Index))
            {
                if (element.Index < value.L.Count && Materialise(value.L[element.Index], child) is { } projected)
                {
                    list.Add(projected);
                }
            }
            return list.Count == 0 ? null : AttributeValue.FromList(list);
        }
        return null;
    }

    /// <summary>For ReturnValues UPDATED_*: the paths an update touched (the item's changed parts).</summary>
    public static List<DocumentPath> UpdatedPaths(IReadOnlyList<UpdateAction> actions) => [.. actions.Select(static a => a.Path)];

    /// <summary>Whether the strings sort the way DynamoDB sorts them: by UTF-8 bytes.</summary>
    public static int CompareStrings(string a, string b) => Encoding.UTF8.GetBytes(a).AsSpan().SequenceCompareTo(Encoding.UTF8.GetBytes(b));
}
